"""A run's events: frozen dataclasses appended to one Redis Stream per assistant message.

The stream id is the SSE id. The database holds the durable outcome; the stream is the live log,
trimmed and expired once the run is over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
class CheckEvent(Event):
    """A check of the version the model left (DESIGN section 16): running, then its verdict."""

    type: ClassVar[str] = "check"
    phase: str  # "build" | "render"
    status: str  # "running" | "passed" | "failed"
    errors: tuple[str, ...] | None = None

    def data(self) -> dict[str, Any]:
        found: dict[str, Any] = {"phase": self.phase, "status": self.status}
        if self.errors is not None:
            found["errors"] = list(self.errors)
        return found


@dataclass(frozen=True)
class DoneEvent(Event):
    type: ClassVar[str] = "done"
    status: str


def stream_key(message_id: str) -> str:
    return f"run:{message_id}:events"


def _done_key(message_id: str) -> str:
    return f"run:{message_id}:done"


# Appends are gated on the run's `done` marker inside Redis, so once a run's last event is written
# nothing can follow it: not a late delta from a worker that has yet to notice a cancel.
_APPEND = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {} end
local ids = {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                             'type', ARGV[i], 'data', ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return ids
"""

_FINISH = """
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ARGV[2]) then return {} end
local ids = {}
for i = 4, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                             'type', ARGV[i], 'data', ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return ids
"""

# A run's first entry when its stream is still empty: what a client that came before the worker
# gets, with a real id, so every client of the run sees the same ids from the first on.
_OPEN = """
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('XLEN', KEYS[1]) > 0 then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'type', ARGV[3], 'data', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def _encode(events: tuple[Event, ...]) -> list[str]:
    flat: list[str] = []
    for event in events:
        flat += [event.type, json.dumps(event.data(), separators=(",", ":"))]
    return flat


class EventLog:
    """Appends to and reads from the per-message streams."""

    def __init__(self, client: redis.Redis, *, maxlen: int = 10000, ttl: int = 3600) -> None:
        self.redis = client
        self.maxlen = maxlen
        self.ttl = ttl
        self._append = client.register_script(_APPEND)
        self._finish = client.register_script(_FINISH)
        self._open = client.register_script(_OPEN)

    def append(self, message_id: str, *events: Event) -> list[str]:
        """Append events unless the run already ended; returns their stream ids ([] if ended)."""
        keys = [stream_key(message_id), _done_key(message_id)]
        # Live streams may outlast their run by a day at most; finish() shortens that to `ttl`.
        args: list[str | int] = [self.maxlen, self.ttl * 24, *_encode(events)]
        ids: Any = self._append(keys=keys, args=args)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def append_many(self, batch: dict[str, list[Event]]) -> None:
        """The events of many runs in one pipelined round trip, each gated as `append` is.

        EVALSHA straight away (a pipeline given a Script object asks SCRIPT EXISTS first on
        every execute); only a Redis that lost its scripts (a restart) gets them loaded again.
        """
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for message_id, events in batch.items():
                pipe.evalsha(
                    self._append.sha,
                    2,
                    stream_key(message_id),
                    _done_key(message_id),
                    self.maxlen,
                    self.ttl * 24,
                    *_encode(tuple(events)),
                )
            try:
                pipe.execute()
                return
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self.redis.script_load(_APPEND)

    def open(self, message_id: str, event: Event) -> bool:
        """Append `event` only if the stream has no entry yet and the run has not ended."""
        keys = [stream_key(message_id), _done_key(message_id)]
        args: list[str | int] = [self.maxlen, self.ttl * 24, *_encode((event,))]
        return bool(self._open(keys=keys, args=args))

    def finish(self, message_id: str, status: str, *events: Event) -> bool:
        """Append `events` and the one `done` of a run, atomically, whoever gets here first."""
        keys = [stream_key(message_id), _done_key(message_id)]
        args: list[str | int] = [self.maxlen, self.ttl, status]
        args += _encode((*events, DoneEvent(status)))
        return bool(self._finish(keys=keys, args=args))

    def read(
        self, message_id: str, after: str = "0-0", *, count: int = 500, block_ms: int | None = None
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Events after `after`: (id, type, data). Blocks up to block_ms when there are none."""
        reply: Any = self.redis.xread({stream_key(message_id): after}, count=count, block=block_ms)
        items = [decode_entry(i, f) for _key, entries in reply or [] for i, f in entries]
        return [(str(item.id), item.type, json.loads(item.data)) for item in items]


@dataclass(frozen=True)
class Item:
    """One event as clients see it: stream id (None when built from the database), type, JSON."""

    id: str | None
    type: str
    data: str

    @classmethod
    def synthesized(cls, type: str, **data: Any) -> Item:
        return cls(None, type, json.dumps(data, separators=(",", ":")))


def as_text(value: bytes | str) -> str:
    """A Redis reply's bytes or str as str, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else value


def decode_entry(entry_id: bytes | str, fields: Mapping[Any, bytes | str]) -> Item:
    """The one decoder of a stream entry, used by the worker's reads and the web's replays."""
    plain = {as_text(k): as_text(v) for k, v in fields.items()}
    return Item(as_text(entry_id), plain.get("type", ""), plain.get("data", "{}"))
