"""The Celery application: built from Settings, with the code-agent and reaper tasks on it."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery, bootsteps

from orchestrator.runs.runner import RunServices
from orchestrator.settings import Settings

RUN_TASK = "workers.run_message"
IMPORT_TASK = "workers.import_repository"
REAP_TASK = "workers.reap_runs"
REAP_EVERY_SECONDS = 15.0
# A sweep not started by the time the next is sent is dropped: sweeps never pile up in a queue.
REAP_EXPIRES_SECONDS = REAP_EVERY_SECONDS * 0.8


def maintenance_queue(settings: Settings) -> str:
    """The reaper's own queue, so it never waits behind runs (Procfile `reaper` consumes it)."""
    return f"{settings.queue_name}.maintenance"


class ForgeCelery(Celery):  # type: ignore[misc]
    """A Celery app that carries its Settings and builds a process's run services lazily."""

    settings: Settings

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("appforge", **kwargs)
        self.settings = settings
        self._services: RunServices | None = None
        self._services_pid: int | None = None
        self._services_lock = threading.Lock()

    def run_services(self) -> RunServices:
        # Built after the fork, in the process that uses them: no client crosses a fork.
        with self._services_lock:
            if self._services is None or self._services_pid != os.getpid():
                from orchestrator.wiring.services import build_run_services

                self._services = build_run_services(self.settings)
                self._services_pid = os.getpid()
            return self._services


def create_celery(settings: Settings) -> ForgeCelery:
    app = ForgeCelery(settings)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = settings.redis_url
    app.conf.task_default_queue = settings.queue_name
    # Task events for Flower (CELERY_TASK_EVENTS); celeryconfig.py keeps them off by default.
    app.conf.worker_send_task_events = app.conf.task_send_sent_event = settings.task_events
    app.conf.task_routes = {
        RUN_TASK: {"queue": settings.queue_name},
        IMPORT_TASK: {"queue": settings.queue_name},
        REAP_TASK: {"queue": maintenance_queue(settings)},
    }
    app.conf.beat_schedule = {
        "reap-stuck-runs": {
            "task": REAP_TASK,
            "schedule": REAP_EVERY_SECONDS,
            "options": {"queue": maintenance_queue(settings), "expires": REAP_EXPIRES_SECONDS},
        },
    }
    app.steps["worker"].add(SandboxIsolationCheck)
    from workers.metrics_server import MetricsServer

    app.steps["worker"].add(MetricsServer)  # WORKER_METRICS_PORT (workers/metrics_server.py)
    from workers import tasks

    tasks.register(app)
    return app


class SandboxIsolationCheck(bootsteps.Step):  # type: ignore[misc]
    """A worker refuses to start when its sandboxes cannot be isolated as configured (§15), or
    when it would take runs it can only fail (templates it cannot prepare)."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        from orchestrator.errors import ConfigError
        from orchestrator.wiring.worker_start import check_worker_sandboxes

        settings = parent.app.settings
        # The queues this worker consumes are chosen by now (-Q); the reaper's takes no run.
        takes_runs = settings.queue_name in parent.app.amqp.queues.consume_from
        try:
            check_worker_sandboxes(settings, takes_runs=takes_runs)
        except ConfigError as exc:
            logging.getLogger(__name__).critical("worker not started: %s", exc.message)
            raise SystemExit(1) from exc
        super().__init__(parent, **kwargs)
