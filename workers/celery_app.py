"""The Celery edge for `celery -A workers.celery_app`: Settings come from the environment here."""

from __future__ import annotations

import logging
import os

from orchestrator.settings import Settings
from workers.app import create_celery

logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))

app = create_celery(Settings.from_env(os.environ))
