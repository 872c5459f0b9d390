"""The reaper: no run stays PENDING or STREAMING forever (DESIGN section 9).

A STREAMING run whose worker stopped heartbeating goes back to PENDING and is sent again; a
PENDING run that no worker picked up is sent again; past `max_run_attempts` it ends FAILED with
its credit back. Sending twice is harmless: a run is claimed atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import update

from models import Message, Status, transaction, utcnow
from orchestrator import lifecycle
from orchestrator.errors import QueueUnavailable
from orchestrator.events import ErrorEvent, StatusEvent
from orchestrator.runner import RunServices

log = logging.getLogger(__name__)

GAVE_UP = (
    "Sorry, this request could not be completed after several attempts. "
    "Your credit was refunded; please try again."
)


@dataclass
class ReapReport:
    requeued: int = 0
    resent: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def reap(services: RunServices, dispatch: Callable[[str, str], None]) -> ReapReport:
    settings = services.settings
    report = ReapReport()
    with transaction(services.db) as session:
        stale = lifecycle.stale_runs(
            session, stale_after=settings.stale_after, pending_grace=settings.pending_grace
        )
        candidates = [(m.id, m.run_id, m.status, m.attempts, m.content) for m in stale]
    cutoff = utcnow() - timedelta(seconds=settings.stale_after)
    for message_id, run_id, status, attempts, content in candidates:
        assert run_id is not None
        if attempts >= settings.max_run_attempts:
            with transaction(services.db) as session:
                kept = content or GAVE_UP  # text that reached clients is kept
                if lifecycle.fail_unclaimed(session, message_id, "gave up after retries", kept):
                    report.failed += 1
                    _announce_failure(services, message_id, content)
            continue
        with transaction(services.db) as session:
            if status == Status.STREAMING:
                if not lifecycle.requeue(session, message_id, cutoff):
                    continue
                report.requeued += 1
            else:
                # Touch it so the next sweep waits a full grace period before sending again.
                session.execute(
                    update(Message)
                    .where(Message.id == message_id, Message.status == Status.PENDING)
                    .values(updated_at=utcnow())
                )
                report.resent += 1
        try:
            dispatch(message_id, run_id)
        except QueueUnavailable:
            log.warning("reaper could not re-send %s; will try again next sweep", message_id)
    if report.requeued or report.resent or report.failed:
        log.info("reaper: %s", report)
    return report


def _announce_failure(services: RunServices, message_id: str, content: str) -> None:
    try:
        services.events.append(
            message_id, ErrorEvent("gave up after retries"), StatusEvent(Status.FAILED)
        )
        services.events.finish(message_id, Status.FAILED)
    except Exception:
        log.warning("could not announce the failure of %s", message_id)
