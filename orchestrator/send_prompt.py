"""Sending a prompt: store the turn and spend a credit in one transaction, then enqueue the run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import (
    RUNNING,
    Attachment,
    AttachmentType,
    Conversation,
    CreditLedger,
    Fragment,
    IdempotencyKey,
    Import,
    Message,
    MessageType,
    Plan,
    Role,
    Status,
    User,
    new_id,
    transaction,
    utcnow,
)
from orchestrator import accounts, metrics, projects
from orchestrator.errors import (
    Conflict,
    Forbidden,
    IdempotencyMismatch,
    InvalidRequest,
    NotFound,
    QueueUnavailable,
    TooManyRuns,
)

log = logging.getLogger(__name__)

# Plain Core tables on the hot path: ORM-enabled statements cost several times more CPU.
MESSAGES = cast(Table, Message.__table__)
ATTACHMENTS = cast(Table, Attachment.__table__)
CONVERSATIONS = cast(Table, Conversation.__table__)

Dispatch = Callable[[str, str], None]
"""Enqueues the run of an assistant message: (message_id, run_id). Raises QueueUnavailable."""

PlanImport = Callable[[Session, str, str, str], str | None]
"""(session, user_id, project_id, repository URL) -> the id of a PENDING import made for it, or
None when the URL is not one an import may fetch (the attachment stays text for the model)."""


@dataclass(frozen=True)
class AttachmentInput:
    url: str
    size: int
    type: str = "IMAGE"
    width: int | None = None
    height: int | None = None
    import_id: str | None = None
    source_metadata: Any = None

    def row(self, message_id: str, now: datetime) -> dict[str, Any]:
        """The attachments row this input becomes."""
        return {
            "id": new_id(),
            "message_id": message_id,
            "type": self.type,
            "url": self.url,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "import_id": self.import_id,
            "source_metadata": self.source_metadata,
            "created_at": now,
            "updated_at": now,
        }


@dataclass(frozen=True)
class PromptRequest:
    user_id: str
    text: str
    project_id: str | None = None
    conversation_id: str | None = None
    image_url: str | None = None
    attachments: tuple[AttachmentInput, ...] = field(default_factory=tuple)
    idempotency_key: str | None = None
    body_hash: str = ""


@dataclass(frozen=True)
class PromptAccepted:
    user_message_id: str
    assistant_message_id: str
    run_id: str
    replayed: bool = False
    user_message: Message | None = None  # as stored; None on a replay
    # A GITHUB_REPO attachment to a project without a version: this import runs first, then
    # sends the run (DESIGN section 18).
    import_id: str | None = None


def send_prompt(
    db: sessionmaker[Session],
    request: PromptRequest,
    *,
    default_credits: int,
    dispatch: Dispatch,
    idempotency_ttl: timedelta = timedelta(hours=24),
    max_runs: int = 0,
    plan_import: PlanImport | None = None,
    dispatch_import: Callable[[str], None] | None = None,
) -> PromptAccepted:
    try:
        with transaction(db) as session:
            accepted = _store_turn(
                session, request, default_credits, idempotency_ttl, max_runs, plan_import
            )
    except _AlreadyRunning as exc:
        with transaction(db) as session:
            running = session.scalar(
                select(Message.id).where(
                    Message.conversation_id == exc.conversation_id, Message.status.in_(RUNNING)
                )
            )
        raise Conflict("A message is already being processed", messageId=running) from exc
    if accepted.replayed:
        return accepted
    try:
        if accepted.import_id is not None and dispatch_import is not None:
            dispatch_import(accepted.import_id)  # the import sends the run once it ends
        else:
            dispatch(accepted.assistant_message_id, accepted.run_id)
    except Exception as exc:
        log.warning("enqueue failed for %s, undoing the turn: %s", accepted.run_id, exc)
        with transaction(db) as session:
            _undo_turn(session, request, accepted)
        raise QueueUnavailable() from exc
    metrics.PROMPTS_ACCEPTED.inc()
    return accepted


class _AlreadyRunning(Exception):
    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id


def _store_turn(
    session: Session,
    request: PromptRequest,
    default_credits: int,
    ttl: timedelta,
    max_runs: int = 0,
    plan_import: PlanImport | None = None,
) -> PromptAccepted:
    """The hot path of the API, so it speaks Core: about six statements in one transaction."""
    if request.idempotency_key:
        accounts.ensure_user(session, request.user_id, default_credits)
        replay = _claim_idempotency_key(session, request, ttl)
        if replay is not None:
            return replay
    conversation = _resolve_conversation(session, request)
    run_id, user_message_id, assistant_id = new_id(), new_id(), new_id()
    # Before the credit, whose row lock lasts until the commit: checking the URL resolves a name.
    attachments, import_id = request.attachments, None
    if plan_import is not None and any(_importable(a) for a in attachments):
        attachments, import_id = _with_import(
            session, request.user_id, conversation.project_id, attachments, plan_import
        )
    plan = accounts.take_credit(session, request.user_id, assistant_id, default_credits)
    if request.image_url and plan != Plan.PRO:
        raise Forbidden("Image uploads require the Pro plan")
    if max_runs > 0:
        _check_runs_in_progress(session, request.user_id, max_runs)

    now = utcnow()
    common = {
        "conversation_id": conversation.id,
        "project_id": conversation.project_id,
        "user_id": request.user_id,
        "created_at": now,
        "updated_at": now,
        "lease": None,
        "attempts": 0,
        "heartbeat_at": None,
        "tool_calls": [],
        "error": None,
        "run_metadata": {},
        "credit_refunded": False,
    }
    user_row = {
        **common,
        "id": user_message_id,
        "role": Role.USER,
        "seq": 0,
        "content": request.text,
        "type": MessageType.RESULT,
        "status": Status.COMPLETE,
        "run_id": None,
        "image_url": request.image_url,
    }
    assistant_row = {
        **common,
        "id": assistant_id,
        "role": Role.ASSISTANT,
        "seq": 1,
        "content": "",
        "type": MessageType.STREAMING,
        "status": Status.PENDING,
        "run_id": run_id,
        "image_url": None,
    }
    try:
        session.execute(insert(MESSAGES), [user_row, assistant_row])
    except IntegrityError as exc:
        # The partial unique index: another run of this conversation is PENDING or STREAMING.
        raise _AlreadyRunning(conversation.id) from exc
    if attachments:
        session.execute(
            insert(ATTACHMENTS), [item.row(user_message_id, now) for item in attachments]
        )
    if import_id is not None:
        session.execute(
            update(Import).where(Import.id == import_id).values(message_id=assistant_id)
        )
    # Sending a prompt is activity: the conversation moves to the top of its list.
    session.execute(
        update(CONVERSATIONS).where(CONVERSATIONS.c.id == conversation.id).values(updated_at=now)
    )
    accepted = PromptAccepted(
        user_message_id,
        assistant_id,
        run_id,
        user_message=Message(**user_row),
        import_id=import_id,
    )
    if request.idempotency_key:
        key = session.get(IdempotencyKey, (request.user_id, request.idempotency_key))
        assert key is not None
        key.message_id = user_message_id
        key.response = {
            "userMessageId": user_message_id,
            "messageId": assistant_id,
            "runId": run_id,
        }
    return accepted


def _importable(item: AttachmentInput) -> bool:
    return item.type == AttachmentType.GITHUB_REPO and item.import_id is None


def _with_import(
    session: Session,
    user_id: str,
    project_id: str,
    attachments: tuple[AttachmentInput, ...],
    plan_import: PlanImport,
) -> tuple[tuple[AttachmentInput, ...], str | None]:
    """The first repository attachment imported when the project has no version yet; its
    `importId` names the import."""
    has_version = session.scalar(select(Fragment.id).where(Fragment.project_id == project_id))
    if has_version is not None:
        return attachments, None
    first = next(a for a in attachments if _importable(a))
    import_id = plan_import(session, user_id, project_id, first.url)
    if import_id is None:
        return attachments, None
    named = tuple(replace(a, import_id=import_id) if a is first else a for a in attachments)
    return named, import_id


def _check_runs_in_progress(session: Session, user_id: str, cap: int) -> None:
    """MAX_RUNS_PER_USER across conversations: counted under the user's row lock.

    take_credit's UPDATE of the user's row holds its lock (PostgreSQL; SQLite's write lock) until
    the commit, so two prompts of one user count one after the other and never both see room.
    """
    running = session.scalar(
        select(func.count())
        .select_from(MESSAGES)
        .where(
            MESSAGES.c.user_id == user_id,
            MESSAGES.c.role == Role.ASSISTANT,
            MESSAGES.c.status.in_(RUNNING),
        )
    )
    if (running or 0) >= cap:
        raise TooManyRuns(cap)  # the transaction rolls back: the credit is not taken


def _claim_idempotency_key(
    session: Session, request: PromptRequest, ttl: timedelta
) -> PromptAccepted | None:
    """Reserve the key first, so a concurrent retry waits for us and then replays our answer."""
    assert request.idempotency_key is not None
    ident = (request.user_id, request.idempotency_key)
    existing = session.get(IdempotencyKey, ident)
    if existing is not None and existing.created_at < utcnow() - ttl:
        session.delete(existing)
        session.flush()
        existing = None
    if existing is None:
        try:
            with session.begin_nested():
                session.add(
                    IdempotencyKey(
                        user_id=request.user_id,
                        key=request.idempotency_key,
                        request_hash=request.body_hash,
                        response={},
                    )
                )
            return None
        except IntegrityError:
            existing = session.get(IdempotencyKey, ident, populate_existing=True)
            assert existing is not None
    if existing.request_hash != request.body_hash:
        raise IdempotencyMismatch()
    stored = existing.response
    return PromptAccepted(stored["userMessageId"], stored["messageId"], stored["runId"], True)


@dataclass(frozen=True)
class _Target:
    id: str
    project_id: str


def _resolve_conversation(session: Session, request: PromptRequest) -> _Target:
    if request.conversation_id:
        found = session.execute(
            select(CONVERSATIONS.c.id, CONVERSATIONS.c.project_id).where(
                CONVERSATIONS.c.id == request.conversation_id,
                CONVERSATIONS.c.user_id == request.user_id,
            )
        ).first()
        if found is None:
            raise NotFound("Conversation not found")
        if request.project_id:
            projects.get_project(session, request.user_id, request.project_id)
            if found.project_id != request.project_id:
                raise InvalidRequest("conversationId does not belong to projectId")
        return _Target(found.id, found.project_id)
    if request.project_id:
        project = projects.get_project(session, request.user_id, request.project_id)
        conversation = projects.default_conversation(session, project)
        return _Target(conversation.id, conversation.project_id)
    raise InvalidRequest("projectId or conversationId is required")


def _undo_turn(session: Session, request: PromptRequest, accepted: PromptAccepted) -> None:
    """The broker refused the run: leave nothing behind and give the credit back."""
    ids = (accepted.user_message_id, accepted.assistant_message_id)
    session.execute(delete(Attachment).where(Attachment.message_id.in_(ids)))
    if accepted.import_id is not None:
        session.execute(delete(Import).where(Import.id == accepted.import_id))
    session.execute(delete(Message).where(Message.id.in_(ids)))
    spent = session.execute(
        delete(CreditLedger).where(
            CreditLedger.message_id == accepted.assistant_message_id, CreditLedger.delta == -1
        )
    )
    if spent.rowcount:  # type: ignore[attr-defined]
        session.execute(
            update(User).where(User.id == request.user_id).values(credits=User.credits + 1)
        )
    if request.idempotency_key:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.user_id == request.user_id,
                IdempotencyKey.key == request.idempotency_key,
            )
        )
