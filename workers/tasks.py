"""Thin tasks: take ids, call one orchestrator function, safe to run twice."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from orchestrator import reaper, runner

if TYPE_CHECKING:
    from workers.app import ForgeCelery

log = logging.getLogger(__name__)


def register(app: ForgeCelery) -> None:
    from workers.app import REAP_TASK, RUN_TASK
    from workers.dispatch import enqueue_run

    @app.task(name=RUN_TASK, bind=True, ignore_result=True)
    def run_message(self: Any, message_id: str, run_id: str) -> str | None:
        return runner.execute_run(app.run_services(), message_id, run_id)

    @app.task(name=REAP_TASK, ignore_result=True)
    def reap_runs() -> dict[str, int]:
        services = app.run_services()
        report = reaper.reap(
            services,
            dispatch=lambda message_id, run_id: enqueue_run(app, message_id, run_id),
        )
        return report.as_dict()
