"""A run as the AI SDK's UI message stream on the wire (DESIGN section 19).

    id: <stream id>                      (every frame of one event carries that event's id)
    data: {"type":"text-delta",...}

then `data: [DONE]`. It is the SSE stream of web/sse.py (the same replay plan, hub and resume),
each event written as the chunks orchestrator/streams/ui_messages.py makes of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import redis

from orchestrator.streams.replay import Item, Replay, id_key, read_after
from orchestrator.streams.ui_messages import UiMessageTranslator
from web.sse import EventStream, frame
from web.stream_hub import StreamHub

HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "x-vercel-ai-ui-message-stream": "v1",
}
DONE = frame("[DONE]")


class UiMessageStream:
    """One client's UI message stream: `EventStream` with each item translated."""

    def __init__(
        self,
        hub: StreamHub,
        client: redis.Redis,
        message_id: str,
        plan: Replay,
        cursor: str | None,
        *,
        ping_interval: float,
    ) -> None:
        self.translator = UiMessageTranslator(message_id)
        if cursor is not None and not (plan.items and plan.items[0].id is None):
            # A resume inside the log: the client holds the parts up to its cursor, so the
            # translator takes their state (an open text part, the step) from the log first.
            self.translator.resume_after(_entries_through(client, message_id, cursor))
        self.events = EventStream(
            hub, client, message_id, plan, ping_interval=ping_interval, render=self.render
        )

    def render(self, item: Item) -> str:
        chunks = self.translator.chunks(item)
        return "".join(frame(json.dumps(c, separators=(",", ":")), id=item.id) for c in chunks)

    def __iter__(self) -> Iterator[str]:
        yield from self.events
        yield DONE


def _entries_through(client: redis.Redis, message_id: str, cursor: str) -> list[Item]:
    items: list[Item] = []
    after = "0-0"
    while batch := read_after(client, message_id, after):
        for item in batch:
            if id_key(item.id or "0") > id_key(cursor):
                return items
            items.append(item)
        after = batch[-1].id or after
    return items
