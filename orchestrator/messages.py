"""Reading messages, their fragments and attachments, always scoped to the owner."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Attachment, Fragment, Message, Project, utcnow
from orchestrator import projects
from orchestrator.errors import InvalidRequest, NotFound
from orchestrator.prompts import AttachmentInput


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


def list_messages(
    session: Session, user_id: str, *, project_id: str | None, conversation_id: str | None
) -> list[MessageView]:
    query = select(Message)
    if conversation_id:
        conversation = projects.get_conversation(session, user_id, conversation_id)
        if project_id and conversation.project_id != project_id:
            raise InvalidRequest("conversationId does not belong to projectId")
        query = query.where(Message.conversation_id == conversation_id)
    elif project_id:
        projects.get_project(session, user_id, project_id)
        query = query.where(Message.project_id == project_id)
    else:
        raise InvalidRequest("projectId or conversationId is required")
    messages = list(session.scalars(query.order_by(Message.created_at, Message.seq, Message.id)))
    return with_relations(session, messages)


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
