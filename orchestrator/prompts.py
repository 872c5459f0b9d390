"""Sending a prompt: store the turn and spend a credit in one transaction, then enqueue the run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import (
    RUNNING,
    Attachment,
    Conversation,
    CreditLedger,
    IdempotencyKey,
    Message,
    MessageType,
    Plan,
    Project,
    Role,
    Status,
    User,
    new_id,
    transaction,
    utcnow,
)
from orchestrator import accounts, projects
from orchestrator.errors import (
    Conflict,
    Forbidden,
    IdempotencyMismatch,
    InvalidRequest,
    QueueUnavailable,
)

log = logging.getLogger(__name__)

Dispatch = Callable[[str, str], None]
"""Enqueues the run of an assistant message: (message_id, run_id). Raises QueueUnavailable."""


@dataclass(frozen=True)
class AttachmentInput:
    url: str
    size: int
    type: str = "IMAGE"
    width: int | None = None
    height: int | None = None
    import_id: str | None = None
    source_metadata: Any = None


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


def send_prompt(
    db: sessionmaker[Session],
    request: PromptRequest,
    *,
    default_credits: int,
    dispatch: Dispatch,
    idempotency_ttl: timedelta = timedelta(hours=24),
) -> PromptAccepted:
    with transaction(db) as session:
        accepted = _store_turn(session, request, default_credits, idempotency_ttl)
    if accepted.replayed:
        return accepted
    try:
        dispatch(accepted.assistant_message_id, accepted.run_id)
    except Exception as exc:
        log.warning("enqueue failed for %s, undoing the turn: %s", accepted.run_id, exc)
        with transaction(db) as session:
            _undo_turn(session, request, accepted)
        raise QueueUnavailable() from exc
    return accepted


def _store_turn(
    session: Session, request: PromptRequest, default_credits: int, ttl: timedelta
) -> PromptAccepted:
    user = accounts.ensure_user(session, request.user_id, default_credits)
    if request.idempotency_key:
        replay = _claim_idempotency_key(session, request, ttl)
        if replay is not None:
            return replay
    conversation = _resolve_conversation(session, request)
    if request.image_url and user.plan != Plan.PRO:
        raise Forbidden("Image uploads require the Pro plan")

    run_id, user_message_id, assistant_id = new_id(), new_id(), new_id()
    accounts.take_credit(session, request.user_id, assistant_id)
    now = utcnow()
    common = {
        "conversation_id": conversation.id,
        "project_id": conversation.project_id,
        "user_id": request.user_id,
        "created_at": now,
        "updated_at": now,
    }
    try:
        with session.begin_nested():
            session.add(
                Message(
                    id=user_message_id,
                    role=Role.USER,
                    seq=0,
                    content=request.text,
                    type=MessageType.RESULT,
                    status=Status.COMPLETE,
                    image_url=request.image_url,
                    **common,
                )
            )
            session.add(
                Message(
                    id=assistant_id,
                    role=Role.ASSISTANT,
                    seq=1,
                    content="",
                    type=MessageType.STREAMING,
                    status=Status.PENDING,
                    run_id=run_id,
                    **common,
                )
            )
            session.flush()
    except IntegrityError as exc:
        running = session.scalar(
            select(Message.id).where(
                Message.conversation_id == conversation.id, Message.status.in_(RUNNING)
            )
        )
        raise Conflict("A message is already being processed", messageId=running) from exc

    for item in request.attachments:
        session.add(
            Attachment(
                message_id=user_message_id,
                type=item.type,
                url=item.url,
                size=item.size,
                width=item.width,
                height=item.height,
                import_id=item.import_id,
                source_metadata=item.source_metadata,
            )
        )
    # Sending a prompt is activity: the conversation and its project move to the top.
    session.execute(
        update(Conversation).where(Conversation.id == conversation.id).values(updated_at=now)
    )
    session.execute(
        update(Project).where(Project.id == conversation.project_id).values(updated_at=now)
    )
    accepted = PromptAccepted(user_message_id, assistant_id, run_id)
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


def _resolve_conversation(session: Session, request: PromptRequest) -> Conversation:
    if request.conversation_id:
        conversation = projects.get_conversation(session, request.user_id, request.conversation_id)
        if request.project_id:
            projects.get_project(session, request.user_id, request.project_id)
            if conversation.project_id != request.project_id:
                raise InvalidRequest("conversationId does not belong to projectId")
        return conversation
    if request.project_id:
        project = projects.get_project(session, request.user_id, request.project_id)
        return projects.default_conversation(session, project)
    raise InvalidRequest("projectId or conversationId is required")


def _undo_turn(session: Session, request: PromptRequest, accepted: PromptAccepted) -> None:
    """The broker refused the run: leave nothing behind and give the credit back."""
    ids = (accepted.user_message_id, accepted.assistant_message_id)
    session.execute(delete(Attachment).where(Attachment.message_id.in_(ids)))
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
