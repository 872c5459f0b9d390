"""Every status change of an assistant message, as one conditional update each.

A worker that claims a run gets a lease; all its later writes are fenced by (id, run id, lease,
status STREAMING), so a writer that lost the race (cancelled, reaped, duplicate) changes nothing
and terminal states stay terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session

from models import (
    RUNNING,
    Fragment,
    Message,
    MessageType,
    Status,
    new_id,
    utcnow,
)
from orchestrator import accounts
from orchestrator.errors import Conflict, NotFound

# A run's fragment is a version: written by versions.record, named here for the runs that end
# with one.
from orchestrator.versions.record import FragmentValues as FragmentValues
from orchestrator.versions.record import upsert_fragment as upsert_fragment

# What an operator's requeue dates a run: older than any grace period.
_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Lease:
    """A claimed run: its message, its run id, and `token`, the value its claim wrote into the
    row's `lease` column (a new one per claim; a requeue clears it)."""

    message_id: str
    run_id: str
    token: str


def _rows(result: Any) -> int:
    return int(result.rowcount)


def still_leased(lease: Lease) -> ColumnElement[bool]:
    """The run's row, still STREAMING under this lease: what every write of a run is fenced by."""
    return and_(
        Message.id == lease.message_id,
        Message.run_id == lease.run_id,
        Message.lease == lease.token,
        Message.status == Status.STREAMING,
    )


def claim(session: Session, message_id: str, run_id: str) -> Lease | None:
    """PENDING -> STREAMING for exactly one worker; a duplicate delivery gets None."""
    token = new_id()
    now = utcnow()
    result = session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.run_id == run_id,
            Message.status == Status.PENDING,
        )
        .values(
            status=Status.STREAMING,
            lease=token,
            attempts=Message.attempts + 1,
            heartbeat_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return Lease(message_id, run_id, token) if _rows(result) == 1 else None


def complete(
    session: Session,
    lease: Lease,
    *,
    content: str,
    tool_calls: list[dict[str, Any]],
    metadata: dict[str, Any],
    fragment: FragmentValues | None,
) -> Fragment | None | bool:
    """STREAMING -> COMPLETE with its fragment, in one transaction. False if the run was lost."""
    now = utcnow()
    result = session.execute(
        update(Message)
        .where(still_leased(lease))
        .values(
            status=Status.COMPLETE,
            type=MessageType.RESULT,
            content=content,
            tool_calls=tool_calls,
            run_metadata=metadata,
            error=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if _rows(result) != 1:
        return False
    if fragment is None:
        return None
    return upsert_fragment(session, lease.message_id, fragment)


def fail(
    session: Session,
    lease: Lease,
    *,
    content: str,
    error: str,
    tool_calls: list[dict[str, Any]],
    metadata: dict[str, Any],
) -> bool:
    """STREAMING -> FAILED, giving the credit back in the same transaction."""
    now = utcnow()
    result = session.execute(
        update(Message)
        .where(still_leased(lease))
        .values(
            status=Status.FAILED,
            type=MessageType.ERROR,
            content=content,
            error=error,
            tool_calls=tool_calls,
            run_metadata=metadata,
            credit_refunded=True,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if _rows(result) != 1:
        return False
    _refund_failed(session, lease.message_id)
    return True


def _refund_failed(session: Session, message_id: str) -> None:
    """The credit of a run that ended FAILED goes back, in the transaction that failed it."""
    user_id = session.scalar(select(Message.user_id).where(Message.id == message_id))
    assert user_id is not None
    accounts.give_credit(session, user_id, 1, "refund_failed", message_id)


def fail_unclaimed(
    session: Session, message_id: str, error: str, content: str, *, stale_before: Any = None
) -> bool:
    """A run that can never start or be retried (reaper, attempts exhausted) ends FAILED.

    With `stale_before`, a STREAMING run whose worker heartbeated since then is left alone: the
    reaper saw it stale, but its worker was only slow (a database blip) and is still at work.
    """
    now = utcnow()
    running: ColumnElement[bool] = Message.status.in_(RUNNING)
    if stale_before is not None:
        running = (Message.status == Status.PENDING) | and_(
            Message.status == Status.STREAMING, Message.heartbeat_at < stale_before
        )
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, running)
        .values(
            status=Status.FAILED,
            type=MessageType.ERROR,
            content=content,
            error=error,
            lease=None,
            credit_refunded=True,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if _rows(result) != 1:
        return False
    _refund_failed(session, message_id)
    return True


def requeue(session: Session, message_id: str, stale_before: Any) -> bool:
    """A STREAMING run whose worker stopped heartbeating goes back to PENDING; its lease dies."""
    result = session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.status == Status.STREAMING,
            Message.heartbeat_at < stale_before,
        )
        .values(status=Status.PENDING, lease=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return _rows(result) == 1


def requeue_now(session: Session, message_id: str) -> bool:
    """An operator's requeue: a PENDING or STREAMING run goes back to PENDING, its lease dies,
    and it is dated old enough that the reaper's next sweep sends it again."""
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status.in_((Status.PENDING, Status.STREAMING)))
        .values(status=Status.PENDING, lease=None, updated_at=_LONG_AGO)
        .execution_options(synchronize_session=False)
    )
    return _rows(result) == 1


def mark_resent(session: Session, message_id: str) -> bool:
    """A PENDING run the reaper sends again: dated now, so the next sweep waits a full grace
    period before sending it once more."""
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == Status.PENDING)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return _rows(result) == 1


@dataclass(frozen=True)
class CancelOutcome:
    message_id: str
    run_id: str | None
    was_pending: bool


def cancel(session: Session, user_id: str, message_id: str) -> CancelOutcome:
    """-> CANCELLED at once. The credit comes back only if no worker had started the run."""
    message = session.get(Message, message_id)
    if message is None or message.user_id != user_id:
        raise NotFound("Message not found")
    now = utcnow()
    for status, refund in ((Status.PENDING, True), (Status.STREAMING, False)):
        result = session.execute(
            update(Message)
            .where(Message.id == message_id, Message.status == status)
            .values(
                status=Status.CANCELLED,
                type=MessageType.RESULT,
                lease=None,
                credit_refunded=refund,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if _rows(result) == 1:
            if refund:
                accounts.give_credit(session, user_id, 1, "refund_cancelled", message_id)
            return CancelOutcome(message_id, message.run_id, was_pending=refund)
    raise Conflict("Message is not being processed")


def stale_runs(session: Session, *, stale_after: float, pending_grace: float) -> list[Message]:
    """Runs whose worker went quiet, and queued runs no worker picked up in time."""
    now = utcnow()
    streaming = and_(
        Message.status == Status.STREAMING,
        Message.heartbeat_at < now - timedelta(seconds=stale_after),
    )
    pending = and_(
        Message.status == Status.PENDING,
        Message.updated_at < now - timedelta(seconds=pending_grace),
    )
    return list(session.scalars(select(Message).where(streaming | pending).limit(500)))
