"""The Celery edge for `celery -A workers.celery_app`: Settings come from the environment here."""

from __future__ import annotations

import logging

from workers.metrics_server import default_multiprocess_dir

default_multiprocess_dir()  # before prometheus-client is imported (workers/metrics_server.py)

from orchestrator.logs import configure as configure_logs  # noqa: E402
from orchestrator.settings import Settings, environ  # noqa: E402
from workers.worker import create_worker_app  # noqa: E402

settings = Settings.from_env(environ())
logging.basicConfig(level=settings.log_level)
configure_logs(settings.log_format)  # LOG_FORMAT=json: JSON lines with the run's ids
app = create_worker_app(settings)
