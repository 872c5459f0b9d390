"""The Flask app factory: the web edge, where Settings are read and collaborators are wired."""

from __future__ import annotations

import logging
import os

from flask import Flask

from models import make_engine, make_sessionmaker
from orchestrator.events import EventLog
from orchestrator.settings import Settings
from web import errors, guards
from web.state import AppState
from workers.app import ForgeCelery, create_celery


def create_app(settings: Settings | None = None, *, celery: ForgeCelery | None = None) -> Flask:
    settings = settings or Settings.from_env(os.environ)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from orchestrator.services import redis_client

    engine = make_engine(settings.database_url)
    client = redis_client(settings)
    app.extensions["appforge"] = AppState(
        settings=settings,
        engine=engine,
        db=make_sessionmaker(engine),
        redis=client,
        events=EventLog(client, maxlen=settings.event_stream_maxlen, ttl=settings.event_stream_ttl),
        celery=celery or create_celery(settings),
    )
    if settings.demo_mode:
        logging.getLogger(__name__).warning(
            "no LLM provider configured: runs use the built-in offline demo provider"
        )

    from web.api import (
        conversations,
        docs,
        events,
        fragments,
        health,
        me,
        messages,
        preview,
        projects,
        versions,
    )

    for module in (me, projects, conversations, messages, events, fragments, health, preview, docs):
        app.register_blueprint(module.bp)
    app.register_blueprint(versions.bp)
    guards.register(app)
    errors.register(app)
    return app
