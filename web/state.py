"""What the web process holds for its lifetime: settings, database, Redis, the Celery producer."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.settings import Settings
from orchestrator.streams.events import EventLog
from workers.app import ForgeCelery


@dataclass(frozen=True)
class AppState:
    settings: Settings
    engine: Engine
    db: sessionmaker[Session]
    redis: redis.Redis
    events: EventLog
    celery: ForgeCelery


def state() -> AppState:
    value: AppState = current_app.extensions["appforge"]
    return value
