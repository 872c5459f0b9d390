"""The Celery application as every process sees it: built from Settings, with the queues, the
routes and the beat schedule. The web process sends runs through it and loads no run engine;
a worker's app (workers/worker.py) adds the tasks and what runs them."""

from __future__ import annotations

from typing import Any, TypeVar

from celery import Celery

from orchestrator.settings import Settings

RUN_TASK = "workers.run_message"
REAP_TASK = "workers.reap_runs"
REAP_EVERY_SECONDS = 15.0
# A sweep not started by the time the next is sent is dropped: sweeps never pile up in a queue.
REAP_EXPIRES_SECONDS = REAP_EVERY_SECONDS * 0.8


def maintenance_queue(settings: Settings) -> str:
    """The reaper's own queue, so it never waits behind runs (Procfile `reaper` consumes it)."""
    return f"{settings.queue_name}.maintenance"


class ForgeCelery(Celery):  # type: ignore[misc]
    """A Celery app that carries its Settings."""

    settings: Settings

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("appforge", **kwargs)
        self.settings = settings


A = TypeVar("A", bound=ForgeCelery)


def create_celery(settings: Settings) -> ForgeCelery:
    """The app that sends and revokes tasks by name (the web process, the CLI, the beat)."""
    return configure(ForgeCelery(settings))


def configure(app: A) -> A:
    settings = app.settings
    app.config_from_object("celeryconfig")
    app.conf.broker_url = settings.redis_url
    app.conf.task_default_queue = settings.queue_name
    # Task events for Flower (CELERY_TASK_EVENTS); celeryconfig.py keeps them off by default.
    app.conf.worker_send_task_events = app.conf.task_send_sent_event = settings.task_events
    app.conf.task_routes = {
        RUN_TASK: {"queue": settings.queue_name},
        REAP_TASK: {"queue": maintenance_queue(settings)},
    }
    app.conf.beat_schedule = {
        "reap-stuck-runs": {
            "task": REAP_TASK,
            "schedule": REAP_EVERY_SECONDS,
            "options": {"queue": maintenance_queue(settings), "expires": REAP_EXPIRES_SECONDS},
        },
    }
    return app
