"""A message's live events (SSE, DESIGN section 6), and the short-lived token browsers use."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, request
from pydantic import Field

from models import transaction
from orchestrator import contract, messages, metrics
from orchestrator.errors import Unauthorized
from orchestrator.streams import replay
from orchestrator.streams.events import StatusEvent
from orchestrator.tokens import events_key, stream_token, verify_stream_token
from web.api.common import unit_of_work
from web.auth import bearer_token, current_user_id, verify
from web.endpoints import Api, Raw, header
from web.schemas import StreamQuery
from web.sse import EventStream
from web.state import AppState, state
from web.stream_hub import StreamHub

bp = Api("events", __name__)

# One lock per process, made in that process: gunicorn's master imports this module before a
# gevent worker patches threading, and a lock made then is a real one, on which the streams that
# reach a fresh worker together would block its one thread for good.
_hub_locks: dict[int, threading.Lock] = {}

SSE = Raw(
    "text/event-stream",
    "Server-sent events (DESIGN section 6): each has `id` (the stream id), `event` (status, "
    "delta, tool_call, tool_result, fragment, error, done) and `data` (JSON). `done` is last.",
    {"type": "string"},
)
LAST_EVENT_ID = header(
    "Last-Event-ID", "Resume after this stream id", pattern=replay.CURSOR_PATTERN
)


class EventsToken(contract.Shape):
    """The token, for `?token=`."""

    token: str = Field(min_length=1)
    expires_at: contract.Time


@bp.operation(
    "GET /api/messages/<message_id>/events",
    answer=SSE,
    fails="404 503",
    auth="events",
    query=StreamQuery,
    params=(LAST_EVENT_ID,),
)
def stream(message_id: str, query: StreamQuery) -> Any:
    """The run's live event stream, resumable."""
    user_id = stream_user(message_id)
    # The header wins: EventSource reconnects to the same URL and sends the newest id there.
    cursor = replay.parse_cursor(request.headers.get("Last-Event-ID") or query.last_event_id)
    app = state()
    with unit_of_work() as session:
        messages.get_message(session, user_id, message_id)
    streams, plan = follow(message_id, cursor)
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


@bp.operation("POST /api/messages/<message_id>/events/token", answer=EventsToken, fails="404 503")
def token(message_id: str) -> Any:
    """A token for this message's event stream alone, valid at most 5 minutes."""
    with unit_of_work() as session:
        messages.get_message(session, current_user_id(), message_id)
    value, expires = stream_token(_events_key(), current_user_id(), message_id)
    return EventsToken(token=value, expires_at=datetime.fromtimestamp(expires, UTC))


def follow(message_id: str, cursor: str | None) -> tuple[StreamHub, replay.Replay]:
    """This process's hub, and what a client connecting with `cursor` gets first."""
    app = state()
    streams = hub(current_app)
    plan = replay.plan(
        streams.client,
        message_id,
        cursor,
        lambda: _run_state(app, message_id),
        lambda status: app.events.open(message_id, StatusEvent(status)),
    )
    return streams, plan


def hub(app: Flask) -> StreamHub:
    """This process's hub, built on first use so that each forked web worker gets its own."""
    found: StreamHub | None = app.extensions.get("appforge.sse_hub")
    if found is not None and found.pid == os.getpid():
        return found
    with _hub_locks.setdefault(os.getpid(), threading.Lock()):
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


def stream_user(message_id: str) -> str:
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
