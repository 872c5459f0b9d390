"""A run's events: frozen dataclasses appended to one Redis Stream per assistant message.

The stream id is the SSE id. The database holds the durable outcome; the stream is the live log,
trimmed and expired once the run is over.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import redis


@dataclass(frozen=True)
class Event:
    type: ClassVar[str]

    def data(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StatusEvent(Event):
    type: ClassVar[str] = "status"
    status: str


@dataclass(frozen=True)
class DeltaEvent(Event):
    type: ClassVar[str] = "delta"
    text: str


@dataclass(frozen=True)
class ToolCallEvent(Event):
    type: ClassVar[str] = "tool_call"
    id: str
    name: str
    args: Any


@dataclass(frozen=True)
class ToolResultEvent(Event):
    type: ClassVar[str] = "tool_result"
    id: str
    result: Any


@dataclass(frozen=True)
class FragmentEvent(Event):
    type: ClassVar[str] = "fragment"
    fragment: dict[str, Any]


@dataclass(frozen=True)
class ErrorEvent(Event):
    type: ClassVar[str] = "error"
    error: str


@dataclass(frozen=True)
class DoneEvent(Event):
    type: ClassVar[str] = "done"
    status: str


def stream_key(message_id: str) -> str:
    return f"run:{message_id}:events"


def _done_key(message_id: str) -> str:
    return f"run:{message_id}:done"


class EventLog:
    """Appends to and reads from the per-message streams."""

    def __init__(self, client: redis.Redis, *, maxlen: int = 10000, ttl: int = 3600) -> None:
        self.redis = client
        self.maxlen = maxlen
        self.ttl = ttl

    def append(self, message_id: str, *events: Event) -> list[str]:
        pipe = self.redis.pipeline(transaction=False)
        for event in events:
            pipe.xadd(
                stream_key(message_id),
                {"type": event.type, "data": json.dumps(event.data(), separators=(",", ":"))},
                maxlen=self.maxlen,
                approximate=True,
            )
        pipe.expire(stream_key(message_id), self.ttl * 24)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in pipe.execute()[:-1]]

    def finish(self, message_id: str, status: str) -> bool:
        """Append the one `done` event of a run, whoever gets here first; then expire the log."""
        if not self.redis.set(_done_key(message_id), status, nx=True, ex=self.ttl):
            return False
        self.append(message_id, DoneEvent(status))
        self.redis.expire(stream_key(message_id), self.ttl)
        return True

    def read(
        self, message_id: str, after: str = "0-0", *, count: int = 500, block_ms: int | None = None
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Events after `after`: (id, type, data). Blocks up to block_ms when there are none."""
        reply = self.redis.xread({stream_key(message_id): after}, count=count, block=block_ms)
        out: list[tuple[str, str, dict[str, Any]]] = []
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                kind = fields[b"type"].decode() if b"type" in fields else fields["type"]
                raw = fields[b"data"] if b"data" in fields else fields["data"]
                out.append((ident, kind, json.loads(raw)))
        return out
