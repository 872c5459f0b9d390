"""The reaper: no run stays PENDING or STREAMING forever (DESIGN section 9).

A STREAMING run whose worker stopped heartbeating goes back to PENDING and is sent again; a
PENDING run that no worker picked up is sent again, once per `pending_grace`; past
`max_run_attempts` claims, or once it has waited `max_resends` re-sends long without a worker
taking it, it ends FAILED with its credit back. Sending twice is harmless (a run is claimed
atomically), and the bound keeps a backlog from filling the queue with copies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Import, ImportStatus, Status, transaction, utcnow
from orchestrator.errors import QueueUnavailable
from orchestrator.run_services import RunServices
from orchestrator.runs import lifecycle
from orchestrator.streams.events import ErrorEvent, StatusEvent

log = logging.getLogger(__name__)

GAVE_UP = (
    "Sorry, this request could not be completed after several attempts. "
    "Your credit was refunded; please try again."
)
NOT_STARTED = (
    "Sorry, no worker was free to take this request in time. "
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
        candidates = [
            (m.id, m.run_id, m.status, m.attempts, m.content, m.heartbeat_at or m.created_at)
            for m in stale
        ]
        importing = waiting_for_imports(session, [c[0] for c in candidates if c[2] == "PENDING"])
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.stale_after)
    # Waiting since before this, a queued run has been re-sent `max_resends` times already.
    resent_enough = now - timedelta(seconds=(settings.max_resends + 1) * settings.pending_grace)
    for message_id, run_id, status, attempts, content, waiting_since in candidates:
        assert run_id is not None
        if message_id in importing:
            continue  # not stuck: its import sends it when it ends (or ends FAILED, and then)
        gave_up = None
        if attempts >= settings.max_run_attempts:
            gave_up = ("gave up after retries", GAVE_UP)
        elif status == Status.PENDING and waiting_since < resent_enough:
            gave_up = ("no worker picked the run up", NOT_STARTED)
        if gave_up is not None:
            error, words = gave_up
            kept = content or words  # text that reached clients is kept
            with transaction(services.db) as session:
                failed = lifecycle.fail_unclaimed(
                    session, message_id, error, kept, stale_before=cutoff
                )
            if failed:  # announced and cleaned up only once it is committed
                report.failed += 1
                _announce_failure(services, message_id, error)
                _discard_sandbox(services, run_id)
            continue
        with transaction(services.db) as session:
            if status == Status.STREAMING:
                if not lifecycle.requeue(session, message_id, cutoff):
                    continue
                report.requeued += 1
            else:
                if not lifecycle.mark_resent(session, message_id):
                    continue
                report.resent += 1
        if status == Status.STREAMING:
            # Before the re-send, so the next attempt of this run id starts from a clean slate.
            _discard_sandbox(services, run_id)
        try:
            dispatch(message_id, run_id)
        except QueueUnavailable:
            log.warning("reaper could not re-send %s; will try again next sweep", message_id)
    if report.requeued or report.resent or report.failed:
        log.info("reaper: %s", report)
    return report


def waiting_for_imports(session: Session, message_ids: list[str]) -> set[str]:
    """Of these queued runs, those a repository import still goes on for (DESIGN section 18)."""
    if not message_ids:
        return set()
    found = session.scalars(
        select(Import.message_id).where(
            Import.message_id.in_(message_ids),
            Import.status.in_((ImportStatus.PENDING, ImportStatus.RUNNING)),
        )
    )
    return {message_id for message_id in found if message_id is not None}


def _discard_sandbox(services: RunServices, run_id: str) -> None:
    """What the dead worker's sandbox left behind; a factory without `discard` (E2B) lets its
    sandboxes run out their own timeout."""
    discard = getattr(services.sandboxes, "discard", None)
    if discard is None:
        return
    try:
        discard(run_id)
    except Exception:
        log.warning("could not discard the sandbox of run %s", run_id, exc_info=True)


def _announce_failure(services: RunServices, message_id: str, error: str) -> None:
    try:
        services.events.finish(
            message_id, Status.FAILED, ErrorEvent(error), StatusEvent(Status.FAILED)
        )
    except Exception:
        log.warning("could not announce the failure of %s", message_id)
