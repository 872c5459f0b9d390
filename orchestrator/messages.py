"""Reading messages, their fragments and attachments, always scoped to the owner."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from models import RUNNING, Attachment, Conversation, Fragment, Message, Project, utcnow
from orchestrator import projects
from orchestrator.errors import InvalidRequest, NotFound
from orchestrator.send_prompt import AttachmentInput

# Page sizes of GET /api/messages (README, /openapi.json).
DEFAULT_PAGE = 50
MAX_PAGE = 200


@dataclass(frozen=True)
class MessageView:
    message: Message
    fragment: Fragment | None
    attachments: list[Attachment]


def get_message(session: Session, user_id: str, message_id: str) -> Message:
    message = session.get(Message, message_id)
    if message is None or message.user_id != user_id:
        raise NotFound("Message not found")
    return message


def chat_scope(session: Session, user_id: str, chat_id: str) -> dict[str, str]:
    """What an AI SDK chat id names, as `POST /api/messages` scopes a prompt: one of the user's
    conversations (`conversationId`), else a project (`projectId`, its default conversation)."""
    conversation = session.get(Conversation, chat_id)
    if conversation is not None and conversation.user_id == user_id:
        return {"conversationId": chat_id}
    return {"projectId": chat_id}  # someone else's or no such id: "Project not found"


def running_message(session: Session, user_id: str, chat_id: str) -> str | None:
    """The assistant message running in the chat's conversation, if any; 404 if not the user's."""
    if "conversationId" in chat_scope(session, user_id, chat_id):
        conversation = projects.get_conversation(session, user_id, chat_id)
    else:
        project = projects.get_project(session, user_id, chat_id)
        conversation = projects.default_conversation(session, project)
    return session.scalar(
        select(Message.id)
        .where(Message.conversation_id == conversation.id, Message.status.in_(RUNNING))
        .order_by(Message.created_at.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class Page:
    """Which messages of a listing: the newest `limit`, or `limit` before or after a message."""

    limit: int = DEFAULT_PAGE
    before: str | None = None
    after: str | None = None


@dataclass(frozen=True)
class MessagePage:
    views: list[MessageView]
    older: bool  # messages exist before the first of this page
    newer: bool  # and after its last


def list_messages(
    session: Session,
    user_id: str,
    *,
    project_id: str | None,
    conversation_id: str | None,
    page: Page | None = None,
) -> MessagePage:
    """One page of a conversation's (or a project's) messages, oldest first within the page."""
    page = page or Page()
    if conversation_id:
        conversation = projects.get_conversation(session, user_id, conversation_id)
        if project_id and conversation.project_id != project_id:
            raise InvalidRequest("conversationId does not belong to projectId")
        scope = Message.conversation_id == conversation_id
    elif project_id:
        projects.get_project(session, user_id, project_id)
        scope = Message.project_id == project_id
    else:
        raise InvalidRequest("projectId or conversationId is required")
    order = (Message.created_at, Message.seq, Message.id)
    query = select(Message).where(scope).limit(page.limit + 1)
    if page.after:
        query = query.where(_beyond(_cursor(session, scope, page.after, "after"), after=True))
        found = list(session.scalars(query.order_by(*order)))
        more = len(found) > page.limit
        return MessagePage(with_relations(session, found[: page.limit]), True, more)
    if page.before:
        query = query.where(_beyond(_cursor(session, scope, page.before, "before"), after=False))
    found = list(session.scalars(query.order_by(*(column.desc() for column in order))))
    more = len(found) > page.limit
    newest_first = found[: page.limit]
    return MessagePage(with_relations(session, newest_first[::-1]), more, page.before is not None)


def _cursor(session: Session, scope: ColumnElement[bool], message_id: str, name: str) -> Message:
    found = session.scalar(select(Message).where(scope, Message.id == message_id))
    if found is None:
        raise InvalidRequest(f"{name} is not the id of a message in this listing")
    return found


def _beyond(cursor: Message, *, after: bool) -> ColumnElement[bool]:
    """Messages after (or before) `cursor` in the listing's order (created_at, seq, id)."""
    created, seq, id_ = Message.created_at, Message.seq, Message.id
    if after:
        return or_(
            created > cursor.created_at,
            and_(created == cursor.created_at, seq > cursor.seq),
            and_(created == cursor.created_at, seq == cursor.seq, id_ > cursor.id),
        )
    return or_(
        created < cursor.created_at,
        and_(created == cursor.created_at, seq < cursor.seq),
        and_(created == cursor.created_at, seq == cursor.seq, id_ < cursor.id),
    )


def with_relations(session: Session, messages: list[Message]) -> list[MessageView]:
    ids = [m.id for m in messages]
    fragments: dict[str, Fragment] = {}
    attachments: dict[str, list[Attachment]] = {i: [] for i in ids}
    if ids:
        for fragment in session.scalars(select(Fragment).where(Fragment.message_id.in_(ids))):
            fragments[fragment.message_id] = fragment
        query = select(Attachment).where(Attachment.message_id.in_(ids))
        for attachment in session.scalars(query.order_by(Attachment.created_at, Attachment.id)):
            attachments[attachment.message_id].append(attachment)
    return [MessageView(m, fragments.get(m.id), attachments[m.id]) for m in messages]


def message_fragment(session: Session, user_id: str, message_id: str) -> Fragment | None:
    message = get_message(session, user_id, message_id)
    return session.scalar(select(Fragment).where(Fragment.message_id == message.id))


def public_fragment(session: Session, fragment_id: str) -> Fragment:
    fragment = session.get(Fragment, fragment_id)
    if fragment is None:
        raise NotFound("Fragment not found")
    return fragment


def fragment_screenshot(session: Session, fragment_id: str) -> bytes:
    """A version's screenshot (PNG), public like its preview; NotFound when there is none."""
    found = session.execute(
        select(Fragment.screenshot).where(Fragment.id == fragment_id)
    ).scalar_one_or_none()
    if not found:
        raise NotFound("This version has no screenshot")
    return bytes(found)


def public_fragment_file(
    session: Session, fragment_id: str, paths: list[str]
) -> tuple[str, str] | None:
    """The first of `paths` the fragment serves, with its text, reading that file alone.

    A built app serves its build output (`build_files`), a static app its files. The database
    picks the files out of the JSON columns (`->>` in PostgreSQL, JSON_EXTRACT in SQLite), so a
    preview's asset request costs one file, not the whole fragment. NotFound when the fragment
    does not exist.
    """
    if not all(_addressable(p) for p in paths):
        fragment = public_fragment(session, fragment_id)
        files = fragment.build_files if fragment.build_files is not None else fragment.files
        return next(((p, files[p]) for p in paths if p in (files or {})), None)
    built = [Fragment.build_files[p].as_string() for p in paths]
    sources = [Fragment.files[p].as_string() for p in paths]
    row = session.execute(
        select(Fragment.build_files.is_(None), *built, *sources).where(Fragment.id == fragment_id)
    ).first()
    if row is None:
        raise NotFound("Fragment not found")
    static = bool(row[0])  # no build output: the files are the app
    texts = row[1 + len(paths) :] if static else row[1 : 1 + len(paths)]
    found = ((p, text) for p, text in zip(paths, texts, strict=True) if text is not None)
    return next(found, None)


def _addressable(path: str) -> bool:
    """Whether SQLite's JSON path can name this key: it cannot quote a `"`, and it compares the
    key as stored, where json.dumps escaped every character outside printable ASCII."""
    return path.isascii() and path.isprintable() and '"' not in path and "\\" not in path


def owned_fragment(
    session: Session, user_id: str, fragment_id: str
) -> tuple[Fragment, Message, Project]:
    fragment = public_fragment(session, fragment_id)
    message = session.get(Message, fragment.message_id)
    if message is None or message.user_id != user_id:
        raise NotFound("Fragment not found")
    project = projects.get_project(session, user_id, message.project_id)
    return fragment, message, project


def list_attachments(session: Session, user_id: str, message_id: str) -> list[Attachment]:
    message = get_message(session, user_id, message_id)
    query = select(Attachment).where(Attachment.message_id == message.id)
    return list(session.scalars(query.order_by(Attachment.created_at, Attachment.id)))


def add_attachment(
    session: Session, user_id: str, message_id: str, item: AttachmentInput
) -> Attachment:
    message = get_message(session, user_id, message_id)
    attachment = Attachment(**item.row(message.id, utcnow()))
    session.add(attachment)
    session.flush()
    return attachment
