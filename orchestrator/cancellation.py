"""Cooperative cancellation: DELETE sets a flag in Redis and wakes the task that watches for it.

The flag is durable (a late or duplicate delivery still sees it); the signal list wakes a
watcher blocked in BLPOP at once, so a cancel is noticed in milliseconds, not a poll later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from sqlalchemy.orm import Session, sessionmaker

from models import Status, transaction
from orchestrator import lifecycle
from orchestrator.events import EventLog, StatusEvent
from orchestrator.lifecycle import CancelOutcome

log = logging.getLogger(__name__)

FLAG_TTL_SECONDS = 24 * 3600


def flag_key(message_id: str) -> str:
    return f"run:{message_id}:cancel"


def signal_key(message_id: str) -> str:
    return f"run:{message_id}:cancel-signal"


def request_cancel(client: redis.Redis, message_id: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.set(flag_key(message_id), "1", ex=FLAG_TTL_SECONDS)
    pipe.lpush(signal_key(message_id), "1")
    pipe.expire(signal_key(message_id), 60)
    pipe.execute()


def is_cancel_requested(client: redis.Redis, message_id: str) -> bool:
    return bool(client.exists(flag_key(message_id)))


class RunWatch:
    """A thread beside a run: polls the cancel flag and heartbeats the run while it works.

    `cancelled()` turns true when the flag is set, when a heartbeat finds the run is no longer
    ours (cancelled in the database, or handed to another worker), or when `stop()` is called.
    """

    def __init__(
        self,
        client: redis.Redis,
        message_id: str,
        heartbeat: Callable[[], bool],
        *,
        poll_interval: float = 0.1,
        heartbeat_interval: float = 5.0,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self._redis = client
        self._message_id = message_id
        self._heartbeat = heartbeat
        self._poll = poll_interval
        self._beat_every = heartbeat_interval
        self._on_cancel = on_cancel
        self._event = threading.Event()
        self._stopped = threading.Event()
        self.reason: str | None = None
        self._thread = threading.Thread(target=self._loop, name=f"watch-{message_id}", daemon=True)

    def __enter__(self) -> RunWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # No join: the thread is at most one BLPOP timeout from seeing this and ending.
        self._stopped.set()

    def cancelled(self) -> bool:
        return self._event.is_set()

    def trip(self, reason: str) -> None:
        if self._event.is_set():
            return
        self.reason = reason
        self._event.set()
        if self._on_cancel is not None:
            try:
                self._on_cancel()
            except Exception:  # the run's own cleanup still runs; never kill the watcher
                log.exception("cancel hook failed for %s", self._message_id)

    def _loop(self) -> None:
        next_beat = time.monotonic() + self._beat_every
        while not self._stopped.is_set():
            # The heartbeat goes to the database and must never wait on Redis: a heartbeat
            # skipped during a Redis outage would let the reaper take a live run away.
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self._beat_every
                try:
                    if not self._heartbeat():
                        self.trip("lost")
                        return
                except Exception:  # a database blip must not end the run by itself
                    log.warning("watch of %s could not heartbeat", self._message_id, exc_info=True)
            try:
                woken = self._redis.blpop([signal_key(self._message_id)], timeout=self._poll)
                if self._stopped.is_set():
                    return
                if woken or is_cancel_requested(self._redis, self._message_id):
                    self.trip("cancelled")
                    return
            except Exception:  # Redis down: a DELETE still reaches the run through its heartbeat
                log.warning("watch of %s could not read its cancel flag", self._message_id)
                self._stopped.wait(self._poll)


def cancel_run(
    db: sessionmaker[Session],
    client: redis.Redis,
    events: EventLog,
    user_id: str,
    message_id: str,
    revoke: Callable[[str], None],
) -> CancelOutcome:
    """DELETE: CANCELLED at once in the database, then the flag, the revoke and the last event."""
    with transaction(db) as session:
        outcome = lifecycle.cancel(session, user_id, message_id)
    try:
        request_cancel(client, message_id)
        events.finish(message_id, Status.CANCELLED, StatusEvent(Status.CANCELLED))
    except redis.RedisError:  # the worker's heartbeat still finds the run is no longer its own
        log.warning("could not flag the cancel of %s in Redis", message_id, exc_info=True)
    if outcome.run_id:
        revoke(outcome.run_id)
    return outcome
