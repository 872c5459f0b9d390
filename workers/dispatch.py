"""Sending and revoking runs: what the web process and the reaper use to talk to workers."""

from __future__ import annotations

import logging

from orchestrator.errors import QueueUnavailable
from workers.app import RUN_TASK, ForgeCelery

log = logging.getLogger(__name__)

# A queued run nobody picked up within this long is dropped by Celery; the reaper re-sends it.
QUEUED_RUN_EXPIRES_SECONDS = 3600


def enqueue_run(app: ForgeCelery, message_id: str, run_id: str) -> None:
    try:
        app.send_task(
            RUN_TASK,
            args=[message_id, run_id],
            task_id=run_id,  # so DELETE can revoke the run by its id
            queue=app.settings.queue_name,
            expires=QUEUED_RUN_EXPIRES_SECONDS,
        )
    except Exception as exc:
        raise QueueUnavailable() from exc


def revoke_run(app: ForgeCelery, run_id: str) -> None:
    """Drop the task if it is still queued; a running one stops through the cancel flag."""
    try:
        app.control.revoke(run_id)
    except Exception:  # the cancel flag and the fenced writes still stop the run
        log.warning("could not broadcast revoke of %s", run_id, exc_info=True)
