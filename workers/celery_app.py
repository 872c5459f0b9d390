"""The Celery edge for `celery -A workers.celery_app`: Settings come from the environment here."""

from __future__ import annotations

import logging
import os

from workers.metrics_server import default_multiprocess_dir

default_multiprocess_dir()  # before prometheus-client is imported (workers/metrics_server.py)

from orchestrator.logs import configure as configure_logs  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from workers.worker import create_worker_app  # noqa: E402

logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))

settings = Settings.from_env(os.environ)
configure_logs(settings.log_format)  # LOG_FORMAT=json: JSON lines with the run's ids
app = create_worker_app(settings)
