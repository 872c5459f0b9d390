"""A worker's Celery app: the tasks, the process's run services, and the checks at its start.

Only worker processes (workers/celery_app.py) and the tests that run workers build it; it is
where the run engine is loaded.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import bootsteps

from orchestrator.errors import ConfigError
from orchestrator.run_services import RunServices
from orchestrator.settings import Settings
from orchestrator.wiring.services import build_run_services
from orchestrator.wiring.worker_start import check_worker_sandboxes, log_checks
from workers import tasks
from workers.app import ForgeCelery, configure
from workers.metrics_server import MetricsServer


class WorkerCelery(ForgeCelery):
    """A Celery app that builds its process's run services lazily."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._services: RunServices | None = None
        self._services_pid: int | None = None
        self._services_lock = threading.Lock()

    def run_services(self) -> RunServices:
        # Built after the fork, in the process that uses them: no client crosses a fork.
        with self._services_lock:
            if self._services is None or self._services_pid != os.getpid():
                self._services = build_run_services(self.settings)
                self._services_pid = os.getpid()
            return self._services


def create_worker_app(settings: Settings) -> WorkerCelery:
    app = configure(WorkerCelery(settings))
    app.steps["worker"].add(SandboxIsolationCheck)
    app.steps["worker"].add(MetricsServer)  # WORKER_METRICS_PORT (workers/metrics_server.py)
    tasks.register(app)
    return app


class SandboxIsolationCheck(bootsteps.Step):  # type: ignore[misc]
    """A worker refuses to start when its sandboxes cannot be isolated as configured (§15), or
    when it would take runs it can only fail (templates it cannot prepare)."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        settings = parent.app.settings
        # The queues this worker consumes are chosen by now (-Q); the reaper's takes no run.
        takes_runs = settings.queue_name in parent.app.amqp.queues.consume_from
        try:
            check_worker_sandboxes(settings, takes_runs=takes_runs)
        except ConfigError as exc:
            logging.getLogger(__name__).critical("worker not started: %s", exc.message)
            raise SystemExit(1) from exc
        if takes_runs:
            log_checks(settings)
        super().__init__(parent, **kwargs)
