"""Cooperative cancellation: DELETE sets a flag in Redis; the running task watches for it."""

from __future__ import annotations

import logging
import threading
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


def request_cancel(client: redis.Redis, message_id: str) -> None:
    client.set(flag_key(message_id), "1", ex=FLAG_TTL_SECONDS)


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
        self._stopped.set()
        self._thread.join(timeout=5)

    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

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
        since_beat = 0.0
        while not self._stopped.wait(self._poll):
            since_beat += self._poll
            try:
                if is_cancel_requested(self._redis, self._message_id):
                    self.trip("cancelled")
                    return
                if since_beat >= self._beat_every:
                    since_beat = 0.0
                    if not self._heartbeat():
                        self.trip("lost")
                        return
            except Exception:  # a Redis or database blip must not end the run by itself
                log.warning("watch of %s could not check in", self._message_id, exc_info=True)


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
