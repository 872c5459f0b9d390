"""The AI SDK's side of the API (DESIGN section 19): a run as its UI message stream, and the two
endpoints `useChat` with a `DefaultChatTransport` calls (send, resume)."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from orchestrator import messages, metrics
from orchestrator.streams import replay
from web.api.common import unit_of_work
from web.api.events import LAST_EVENT_ID, follow
from web.api.messages import IDEMPOTENCY_KEY, accept
from web.auth import current_user_id
from web.endpoints import Api, Raw
from web.errors import RunInProgress
from web.schemas import ChatRequest, StreamQuery
from web.state import state
from web.ui_stream import HEADERS, UiMessageStream

bp = Api("chat", __name__)

UI_STREAM = Raw(
    "text/event-stream",
    "The Vercel AI SDK's UI message stream, protocol v1 (header "
    "`x-vercel-ai-ui-message-stream: v1`): `data:` frames of its chunks (start, start-step, "
    "text-start, text-delta, text-end, tool-input-available, tool-output-available, "
    "data-status, data-fragment, error, finish-step, finish or abort), then `data: [DONE]`. "
    "Each frame has `id:` (the event stream's id) for `Last-Event-ID`.",
    # Each event, as OpenAPI 3.2's itemSchema for text/event-stream describes them.
    {
        "type": "object",
        "required": ["data"],
        "properties": {
            "id": {"type": "string", "description": "The event stream's id"},
            "data": {"type": "string", "description": "A chunk as JSON, or `[DONE]` last"},
        },
    },
)
NOTHING_RUNS = Raw(None, "No run of this chat is in progress")


@bp.operation(
    "GET /api/messages/<message_id>/ui-stream",
    answer=UI_STREAM,
    fails="404 503",
    query=StreamQuery,
    params=(LAST_EVENT_ID,),
)
def ui_stream(message_id: str, query: StreamQuery) -> Any:
    """The run as the AI SDK's UI message stream, resumable."""
    user_id = current_user_id()
    cursor = replay.parse_cursor(request.headers.get("Last-Event-ID") or query.last_event_id)
    with unit_of_work() as session:
        messages.get_message(session, user_id, message_id)
    return _respond(message_id, cursor)


@bp.operation(
    "POST /api/chat",
    answer=UI_STREAM,
    also={409: RunInProgress},
    fails="402 403 404 422 429 503",
    body=ChatRequest,
    params=(IDEMPOTENCY_KEY,),
)
def send(body: ChatRequest) -> Any:
    """Send the last user message as a prompt (every rule of `POST /api/messages`); the answer
    is the new run's UI message stream."""
    with unit_of_work() as session:
        scope = messages.chat_scope(session, current_user_id(), body.id)
    accepted = accept(body.send_message(scope))
    return _respond(accepted.assistant_message_id, None)


@bp.operation(
    "GET /api/chat/<chat_id>/stream",
    answer=UI_STREAM,
    also={204: NOTHING_RUNS},
    fails="404 503",
    params=(LAST_EVENT_ID,),
)
def resume(chat_id: str) -> Any:
    """The chat's running run as a UI message stream (`useChat({ resume: true })`); 204 when
    none runs."""
    with unit_of_work() as session:
        message_id = messages.running_message(session, current_user_id(), chat_id)
    if message_id is None:
        return Response(status=204)
    return _respond(message_id, replay.parse_cursor(request.headers.get("Last-Event-ID")))


def _respond(message_id: str, cursor: str | None) -> Response:
    streams, plan = follow(message_id, cursor)
    body = UiMessageStream(
        streams,
        streams.client,
        message_id,
        plan,
        cursor,
        ping_interval=state().settings.sse_ping_interval,
    )
    return Response(
        metrics.counted_stream(iter(body)), mimetype="text/event-stream", headers=HEADERS
    )
