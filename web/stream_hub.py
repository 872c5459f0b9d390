"""A few Redis readers per web process, shared by every open event stream of that process.

A client connection never holds a Redis connection of its own while it waits. Each followed
stream is assigned to a reader: one thread blocked in one `XREAD BLOCK` over up to
`keys_per_reader` streams, which hands each batch to that stream's subscriptions. Readers are
sharded because every XREAD names all of its streams again, so one reader over thousands of
streams would pay for all of them on every event. A new stream joins a blocked read at once
through the reader's wake stream, named in every XREAD, so no wake can be lost.

    sub = hub.subscribe(key, after=cursor)      # then read the log once more from `cursor`
    batch = sub.get(timeout)                    # a list of Items, or None when idle
    hub.unsubscribe(sub)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

import redis
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from orchestrator.streams.replay import Item, id_key, xread

log = logging.getLogger(__name__)


class Subscription:
    """A bounded mailbox of one client; `lost` once it fell too far behind and was dropped."""

    def __init__(self, key: str, limit: int) -> None:
        self.key = key
        self.lost = False
        self.over: str | None = None  # the run's final status, once its `done` seems lost
        self._limit = limit
        self._size = 0
        self._batches: deque[list[Item]] = deque()
        self._ready = threading.Condition()

    def offer(self, batch: list[Item]) -> bool:
        with self._ready:
            if self.lost:
                return False
            if self._size + len(batch) > self._limit:
                # A slow client must not hold memory without bound; it re-reads the log instead.
                self.lost = True
                self._batches.clear()
                self._ready.notify()
                return False
            self._batches.append(batch)
            self._size += len(batch)
            self._ready.notify()
            return True

    def end(self, status: str) -> None:
        with self._ready:
            self.over = status
            self._ready.notify()

    def get(self, timeout: float) -> list[Item] | None:
        with self._ready:
            if not self._batches and not self.lost and self.over is None:
                self._ready.wait(timeout)
            if not self._batches:
                return None
            batch = self._batches.popleft()
            self._size -= len(batch)
            return batch


class StreamHub:
    """Routes followed streams to readers and fans their entries out to subscriptions."""

    def __init__(
        self,
        redis_url: str,
        *,
        keys_per_reader: int = 64,
        block_ms: int = 5000,
        count: int = 500,
        limit: int = 10000,
        finished: Callable[[list[str]], dict[str, str]] | None = None,
        check_every: float = 30.0,
    ) -> None:
        self.pid = os.getpid()  # a forked child must build its own hub: threads do not survive
        self.url = redis_url
        self.block_ms = block_ms
        self.count = count
        self._keys_per_reader = keys_per_reader
        self._limit = limit
        # Short reads (replays, catch-ups, wakes) share a pool that waits when all of its
        # connections are busy, so a burst of reconnecting clients queues instead of failing.
        self.client = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                redis_url,
                max_connections=64,
                timeout=20,
                socket_timeout=10,
                socket_connect_timeout=5,
            )
        )
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}
        self._reader_of: dict[str, _Reader] = {}
        self._readers: list[_Reader] = []
        # A `done` Redis lost would leave a stream waiting forever. One query per process now
        # and then asks the database which quiet streams belong to runs that are over.
        self._finished = finished
        self._check_every = check_every
        self._last_seen: dict[str, float] = {}
        self._over_before: set[str] = set()
        self._closed = threading.Event()
        self._watch: threading.Thread | None = None

    @property
    def streams(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    def subscribe(self, key: str, after: str) -> Subscription:
        """Deliver entries of `key` from some point at or before `after`; callers dedupe by id."""
        sub = Subscription(key, self._limit)
        reader = None
        with self._lock:
            subs = self._subs.setdefault(key, set())
            subs.add(sub)
            if len(subs) == 1:
                reader = (
                    next((r for r in self._readers if r.size < self._keys_per_reader), None)
                    or self._new_reader()
                )
                self._reader_of[key] = reader
                self._last_seen[key] = time.monotonic()
                reader.follow(key, after)
            if self._watch is None and self._finished is not None:
                self._watch = threading.Thread(target=self._check, name="sse-watch", daemon=True)
                self._watch.start()
        if reader is not None:
            reader.wake()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.key)
            if subs is None or sub not in subs:
                return
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]
                self._last_seen.pop(sub.key, None)
                self._reader_of.pop(sub.key).drop(sub.key)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            readers = list(self._readers)
        for reader in readers:
            reader.close()

    def deliver(self, key: str, items: list[Item]) -> None:
        with self._lock:
            subs = list(self._subs.get(key, ()))
            if subs:
                self._last_seen[key] = time.monotonic()
        for sub in subs:
            if not sub.offer(items):
                self.unsubscribe(sub)

    def _check(self) -> None:
        """Every `check_every`: end the streams whose run was over in two checks in a row.

        Two, because a worker writes its outcome to the database a moment before it appends the
        closing events; a run over for a whole interval without them has lost them.
        """
        assert self._finished is not None
        while not self._closed.wait(self._check_every):
            now = time.monotonic()
            with self._lock:
                quiet = [k for k, t in self._last_seen.items() if now - t >= self._check_every]
            over: dict[str, str] = {}
            try:
                for start in range(0, len(quiet), 500):  # keeps each IN (...) list modest
                    over.update(self._finished(quiet[start : start + 500]))
            except Exception:  # the database being down must not end healthy streams
                log.warning("could not check on quiet event streams", exc_info=True)
                continue
            confirmed = set(over) & self._over_before
            self._over_before = set(over)
            with self._lock:
                subs = [(sub, over[k]) for k in confirmed for sub in self._subs.get(k, ())]
            for sub, status in subs:
                sub.end(status)

    def _new_reader(self) -> _Reader:
        reader = _Reader(self)
        self._readers.append(reader)
        return reader


class _Reader:
    """One thread and one Redis connection blocked in XREAD over a shard of the streams."""

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self._cursors: dict[str, str] = {}
        self._state = threading.Condition()
        self._wake_key = f"sse:hub:{uuid.uuid4().hex}:wake"
        self._wake_cursor = "0-0"
        self._closed = False
        self._connection: redis.Redis | None = None
        self._thread = threading.Thread(target=self._run, name="sse-reader", daemon=True)
        self._thread.start()

    @property
    def size(self) -> int:
        return len(self._cursors)

    def follow(self, key: str, after: str) -> None:
        with self._state:
            self._cursors[key] = after
            self._state.notify()

    def drop(self, key: str) -> None:
        with self._state:
            self._cursors.pop(key, None)

    def wake(self) -> None:
        try:
            pipe = self.hub.client.pipeline(transaction=False)
            pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake_key, 3600)
            pipe.execute()
        except redis.RedisError:  # the new stream then joins when the current read times out
            log.warning("could not wake an event reader", exc_info=True)

    def close(self) -> None:
        with self._state:
            self._closed = True
            self._state.notify()
        with contextlib.suppress(redis.RedisError):
            self.hub.client.delete(self._wake_key)

    def _run(self) -> None:
        while True:  # one Retrying per read: its waits start again after each success
            reply = Retrying(
                retry=retry_if_exception_type(redis.RedisError),
                wait=wait_exponential(multiplier=0.1, max=5.0),
                before_sleep=_log_lost,
            )(self._read)
            if reply is None:
                return  # closed
            for key, items in reply:
                last = items[-1].id or "0-0"
                if key == self._wake_key:
                    self._wake_cursor = last
                    continue
                with self._state:
                    if key not in self._cursors:
                        continue  # everyone left while we read
                    if id_key(last) > id_key(self._cursors[key]):
                        self._cursors[key] = last
                self.hub.deliver(key, items)

    def _read(self) -> list[tuple[str, list[Item]]] | None:
        """One XREAD over the streams followed now (None once closed); Redis errors are raised."""
        with self._state:
            while not self._cursors and not self._closed:
                self._state.wait()
            if self._closed:
                return None
            streams = dict(self._cursors)
        streams[self._wake_key] = self._wake_cursor
        try:
            if self._connection is None:
                # Its own connection, with a socket timeout longer than the block.
                self._connection = redis.Redis.from_url(
                    self.hub.url,
                    socket_timeout=self.hub.block_ms / 1000 + 10,
                    socket_connect_timeout=5,
                    single_connection_client=True,
                )
            return xread(self._connection, streams, count=self.hub.count, block=self.hub.block_ms)
        except redis.RedisError:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            raise


def _log_lost(state: RetryCallState) -> None:
    wait = state.next_action.sleep if state.next_action else 0.0
    error = state.outcome.exception() if state.outcome else None
    log.warning("event reader lost Redis; retrying in %.1fs", wait, exc_info=error)
