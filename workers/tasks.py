"""Thin tasks: take ids, call one orchestrator function, safe to run twice."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import InterfaceError, OperationalError

from orchestrator import logs
from orchestrator.runs import reaper, runner
from workers.app import REAP_TASK, RUN_TASK
from workers.dispatch import enqueue_run

if TYPE_CHECKING:
    from workers.worker import WorkerCelery

log = logging.getLogger(__name__)


def register(app: WorkerCelery) -> None:

    # shared=False: each app keeps its own tasks, so two apps in one process (tests, tools)
    # never run each other's configuration.
    # A database blip before the claim would leave the run PENDING until the reaper's grace
    # period; retrying is safe, since a run already claimed makes the retry a no-op.
    # Celery ships no types: its task decorator is untyped (here and below).
    @app.task(  # type: ignore[untyped-decorator]
        name=RUN_TASK,
        bind=True,
        ignore_result=True,
        shared=False,
        autoretry_for=(OperationalError, InterfaceError),
        retry_backoff=1,
        retry_backoff_max=30,
        max_retries=6,
    )
    def run_message(self: Any, message_id: str, run_id: str) -> str | None:
        # Every line the run writes carries these ids (orchestrator/logs.py).
        with logs.bind(message_id=message_id, run_id=run_id, user_id=None, request_id=None):
            return runner.execute_run(app.run_services(), message_id, run_id)

    @app.task(name=REAP_TASK, ignore_result=True, shared=False)  # type: ignore[untyped-decorator]
    def reap_runs() -> dict[str, int]:
        services = app.run_services()
        report = reaper.reap(
            services,
            dispatch=lambda message_id, run_id: enqueue_run(app, message_id, run_id),
        )
        return report.as_dict()
