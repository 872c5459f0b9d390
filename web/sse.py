"""Server-Sent Events on the wire: replay a run's log, then follow it live through the hub.

    id: <stream id>        (absent on events built from the database)
    event: <type>
    data: <json>

`: ping` comments keep idle connections open. The stream ends after `done`. `render` writes an
item otherwise (web/ui_stream.py writes the AI SDK's chunks).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator

import redis

from orchestrator.streams.events import stream_key
from orchestrator.streams.replay import Item, Replay, id_key, read_after
from web.stream_hub import StreamHub, Subscription

PING = ": ping\n\n"


def frame(data: str, *, id: str | None = None, event: str | None = None) -> str:
    """One SSE frame; `data` is one line (compact JSON)."""
    head = f"id: {id}\n" if id else ""
    if event:
        head += f"event: {event}\n"
    return f"{head}data: {data}\n\n"


def wire(item: Item) -> str:
    return frame(item.data, id=item.id, event=item.type)


class EventStream:
    """One client's stream: the replay first, then live entries after its cursor, once each."""

    def __init__(
        self,
        hub: StreamHub,
        client: redis.Redis,
        message_id: str,
        replay: Replay,
        *,
        ping_interval: float,
        render: Callable[[Item], str] = wire,
    ) -> None:
        self.hub = hub
        self.render = render
        self.client = client
        self.message_id = message_id
        self.replay = replay
        self.ping_interval = ping_interval
        self.cursor = replay.follow_after or "0-0"
        self._finished = False
        self._sent = len(replay.items)

    def __iter__(self) -> Iterator[str]:
        for item in self.replay.items:
            yield self.render(item)
        if self.replay.follow_after is None:
            return
        sub: Subscription | None = None
        try:
            while not self._finished:
                if sub is None or sub.lost:
                    if sub is not None:
                        self.hub.unsubscribe(sub)
                    # Read the log up to now, join the hub, then read once more: the hub may
                    # start after entries that arrived between the two.
                    yield from self._send(self._catch_up())
                    if self._finished:
                        return
                    sub = self.hub.subscribe(stream_key(self.message_id), self.cursor)
                    yield from self._send(self._catch_up())
                    if not self._sent:
                        yield PING  # sends the headers now; the next event may be far off
                    continue
                # Jittered below the interval, so streams opened together do not all ping in
                # the same instant.
                batch = sub.get(self.ping_interval * random.uniform(0.75, 1.0))
                if batch is not None:
                    yield from self._send(batch)
                elif sub.over is not None:
                    # The run is over and its `done` never came: a last look, then say so.
                    yield from self._send(self._catch_up())
                    if not self._finished:
                        yield self.render(Item.synthesized("done", status=sub.over))
                    return
                else:
                    yield PING
        finally:
            if sub is not None:
                self.hub.unsubscribe(sub)

    def _send(self, items: Iterable[Item]) -> Iterator[str]:
        for item in items:
            if item.id is not None and id_key(item.id) <= id_key(self.cursor):
                continue  # already sent: the log and the hub overlap by design
            self.cursor = item.id or self.cursor
            self._sent += 1
            yield self.render(item)
            if item.type == "done":
                self._finished = True
                return

    def _catch_up(self) -> Iterator[Item]:
        while not self._finished and (
            batch := read_after(self.client, self.message_id, self.cursor)
        ):
            yield from batch
