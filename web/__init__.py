"""The Flask app factory: the web edge, where Settings are read and collaborators are wired."""

from __future__ import annotations

import logging

from flask import Flask

from models import make_engine, make_sessionmaker
from orchestrator import logs
from orchestrator.errors import ConfigError
from orchestrator.settings import Settings, environ
from orchestrator.streams.events import EventLog
from web import access_log, cors, errors, guards, metrics, openapi, request_ids, routes
from web.state import AppState
from workers.app import ForgeCelery, create_celery

NO_AUTH = (
    "Neither AUTH_SECRET nor AUTH_JWKS_URL is set: set AUTH_SECRET (a random string that signs "
    "HS256 tokens) or AUTH_JWKS_URL (your identity provider's JWKS, e.g. Clerk's) before starting "
    "the web app; only the development mode of `scripts/run` makes a secret of its own"
)


def create_app(settings: Settings | None = None, *, celery: ForgeCelery | None = None) -> Flask:
    settings = settings or Settings.from_env(environ())
    if not settings.auth_secret and not settings.auth_jwks_url:
        raise ConfigError(NO_AUTH)
    access_log.install_filter()
    logs.configure(settings.log_format)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from orchestrator.wiring.clients import redis_client

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

    for blueprint in (*routes.BLUEPRINTS, openapi.bp):
        app.register_blueprint(blueprint)
    cors.register(app, settings.cors_origins)
    guards.register(app)
    errors.register(app)
    metrics.register(app)  # HTTP requests by route and status (web/metrics.py)
    request_ids.register(app)  # X-Request-ID, the ids on every log line (web/request_ids.py)
    return app
