"""A message's live events (SSE, DESIGN section 6), and the short-lived token browsers use."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from models import transaction
from orchestrator import messages, metrics
from orchestrator.errors import Unauthorized
from orchestrator.serialize import iso
from orchestrator.streams import replay
from orchestrator.streams.events import StatusEvent
from orchestrator.tokens import events_key, stream_token, verify_stream_token
from web.api.common import unit_of_work
from web.auth import bearer_token, current_user_id, require_user, verify
from web.sse import EventStream
from web.state import AppState, state
from web.stream_hub import StreamHub

bp = Blueprint("events", __name__)

_hub_lock = threading.Lock()


@bp.get("/api/messages/<message_id>/events")
def stream(message_id: str) -> ResponseReturnValue:
    user_id = _stream_user(message_id)
    # The header wins: EventSource reconnects to the same URL and sends the newest id there.
    cursor = replay.parse_cursor(
        request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    )
    app = state()
    with unit_of_work() as session:
        messages.get_message(session, user_id, message_id)
    streams = hub(current_app)
    plan = replay.plan(
        streams.client,
        message_id,
        cursor,
        lambda: _run_state(app, message_id),
        lambda status: app.events.open(message_id, StatusEvent(status)),
    )
    body = EventStream(
        streams,
        streams.client,
        message_id,
        plan,
        ping_interval=app.settings.sse_ping_interval,
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(
        metrics.counted_stream(iter(body)), mimetype="text/event-stream", headers=headers
    )


@bp.post("/api/messages/<message_id>/events/token")
@require_user
def token(message_id: str) -> ResponseReturnValue:
    with unit_of_work() as session:
        messages.get_message(session, current_user_id(), message_id)
    value, expires = stream_token(_events_key(), current_user_id(), message_id)
    return jsonify({"token": value, "expiresAt": iso(datetime.fromtimestamp(expires, UTC))})


def hub(app: Flask) -> StreamHub:
    """This process's hub, built on first use so that each forked web worker gets its own."""
    found: StreamHub | None = app.extensions.get("appforge.sse_hub")
    if found is not None and found.pid == os.getpid():
        return found
    with _hub_lock:
        found = app.extensions.get("appforge.sse_hub")
        if found is None or found.pid != os.getpid():
            app_state = state()
            found = StreamHub(
                app_state.settings.redis_url,
                finished=lambda keys: _finished(app_state, keys),
                check_every=2 * app_state.settings.sse_ping_interval,
            )
            app.extensions["appforge.sse_hub"] = found
        return found


def _stream_user(message_id: str) -> str:
    """`?token=` from the token endpoint (EventSource cannot send headers), else the bearer JWT."""
    raw = request.args.get("token")
    if raw is None:
        return verify(bearer_token())
    user_id = verify_stream_token(_events_key(), raw, message_id)
    if user_id is None:
        raise Unauthorized("Invalid or expired stream token")
    return user_id


def _events_key() -> str:
    app = state()
    return events_key(app.settings.auth_secret, app.redis)


def _run_state(app: AppState, message_id: str) -> replay.RunState:
    with transaction(app.db) as session:
        return replay.load_run_state(session, message_id)


def _finished(app: AppState, keys: list[str]) -> dict[str, str]:
    with transaction(app.db) as session:
        return replay.finished_streams(session, keys)
