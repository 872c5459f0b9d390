"""Logs an operator can search: X-Request-ID, and the ids on every line a request writes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from orchestrator.logs import ContextFilter, JsonFormatter
from orchestrator.settings import Settings
from orchestrator.tokens import user_token
from tests.conftest import SECRET


@pytest.fixture
def app(settings: Settings, celery_app: Any) -> Flask:
    from web import create_app
    from web.auth import require_user

    app = create_app(settings.model_copy(), celery=celery_app)

    @require_user
    def noisy(message_id: str) -> str:
        logging.getLogger("web.test").warning("working on %s", message_id)
        return "ok"

    # A route of the test's own that writes a line, so the line a request writes can be read.
    app.add_url_rule("/test/noisy/<message_id>", view_func=noisy)
    return app


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logging.getLogger("web.test").addHandler(handler)
    try:
        yield out
    finally:
        logging.getLogger("web.test").removeHandler(handler)


def test_a_request_id_is_accepted_and_returned(app: Flask) -> None:
    client = app.test_client()
    given = client.get("/healthz", headers={"X-Request-ID": "req-abc.123"})
    assert given.headers["X-Request-ID"] == "req-abc.123"
    fresh = client.get("/healthz")
    assert len(fresh.headers["X-Request-ID"]) == 32
    hostile = client.get("/healthz", headers={"X-Request-ID": "a b\x7f" + "x" * 200})
    assert hostile.headers["X-Request-ID"] != "a b\x7f" + "x" * 200
    assert len(hostile.headers["X-Request-ID"]) == 32


def test_every_line_of_a_request_carries_its_ids(app: Flask, json_lines: io.StringIO) -> None:
    token = user_token(SECRET, "alice-logs")
    client = app.test_client()
    answer = client.get(
        "/test/noisy/msg-1",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "r-1"},
    )
    assert answer.status_code == 200
    client.get("/test/noisy/msg-2", headers={"Authorization": f"Bearer {token}"})
    first, second = (json.loads(line) for line in json_lines.getvalue().splitlines())
    assert first["message"] == "working on msg-1"
    assert first["request_id"] == "r-1"
    assert first["user_id"] == "alice-logs"
    assert first["message_id"] == "msg-1"
    assert first["level"] == "WARNING" and first["logger"] == "web.test"
    assert second["request_id"] not in ("r-1", None) and second["message_id"] == "msg-2"
