"""Cooperative cancellation: DELETE sets a flag in Redis and tells every worker process at once.

The flag is durable (a late or duplicate delivery still sees it); a message on one pub/sub
channel wakes the process that holds the run in milliseconds. Each worker process has one
`RunHub` for all the runs it holds: one listener on the channel (which reads the flags of all its
runs again after every reconnect, so a cancel sent while Redis was away is not missed) and one
heartbeat statement for all of them, instead of a polling thread per run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from redis.client import PubSub
from sqlalchemy.orm import Session, sessionmaker
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from models import Status, transaction
from orchestrator.cancel_flags import CANCEL_CHANNEL, FLAG_TTL_SECONDS, flag_key
from orchestrator.process_threads import ProcessThreads
from orchestrator.runs import lifecycle, progress
from orchestrator.runs.lifecycle import CancelOutcome, Lease
from orchestrator.stop import StopFlag, StopReason
from orchestrator.streams.events import EventLog, StatusEvent

log = logging.getLogger(__name__)


def request_cancel(client: redis.Redis, message_id: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.set(flag_key(message_id), "1", ex=FLAG_TTL_SECONDS)
    pipe.publish(CANCEL_CHANNEL, message_id)
    pipe.execute()


def is_cancel_requested(client: redis.Redis, message_id: str) -> bool:
    return bool(client.exists(flag_key(message_id)))


class RunWatch(StopFlag):
    """One run's view of its process's hub: a Stop the hub requests.

    Requested ("cancelled") when the run's cancel flag is set, ("lost") when a heartbeat finds
    the run is no longer ours (cancelled in the database, or handed to another worker), or on
    `trip(reason)`. `on_cancel` runs then on a thread of its own (it may kill a sandbox).
    """

    def __init__(
        self, hub: RunHub, lease: Lease, *, on_cancel: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self.hub = hub
        self.lease = lease
        self.message_id = lease.message_id
        self._on_cancel = on_cancel

    def __enter__(self) -> RunWatch:
        self.hub.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.hub.remove(self)

    def trip(self, reason: StopReason) -> None:
        if not self.request(reason) or self._on_cancel is None:
            return
        # Killing a sandbox may take a network round trip: never on the hub's own thread.
        threading.Thread(
            target=self._run_on_cancel, name=f"cancel-{self.message_id}", daemon=True
        ).start()

    def _run_on_cancel(self) -> None:
        assert self._on_cancel is not None
        try:
            self._on_cancel()
        except Exception:  # the run's own cleanup still runs
            log.exception("cancel hook failed for %s", self.message_id)


class RunHub:
    """The runs one worker process holds: one cancel listener and one heartbeat for all of them.

    Threads start on first use in the process that uses them (never inherited across a fork).
    The heartbeat goes to the database and never waits on Redis: a heartbeat skipped during a
    Redis outage would let the reaper take a live run away.
    """

    def __init__(
        self,
        client: redis.Redis,
        db: sessionmaker[Session],
        *,
        heartbeat_interval: float = 5.0,
        reconnect_delay: float = 0.5,
        threads: ProcessThreads | None = None,
    ) -> None:
        self._redis = client
        self._db = db
        self._beat_every = heartbeat_interval
        self._reconnect_delay = reconnect_delay
        self._lock = threading.Lock()
        self._runs: dict[str, set[RunWatch]] = {}
        # Set by the listener once it is subscribed (tests and benchmarks wait on it).
        self.listening = threading.Event()
        self._threads = threads or ProcessThreads()
        self._threads.own(self._start)

    # -- runs come and go ------------------------------------------------------------------

    def add(self, watch: RunWatch) -> None:
        self._threads.ensure()
        with self._lock:
            self._runs.setdefault(watch.message_id, set()).add(watch)
        # Registered first, then the flag: a cancel sent before the run started is seen here,
        # one sent from now on reaches the listener.
        try:
            if is_cancel_requested(self._redis, watch.message_id):
                watch.trip("cancelled")
        except redis.RedisError:  # the heartbeat still finds a cancelled run
            log.warning("could not read the cancel flag of %s", watch.message_id)

    def remove(self, watch: RunWatch) -> None:
        with self._lock:
            watches = self._runs.get(watch.message_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._runs[watch.message_id]

    def watches(self) -> list[RunWatch]:
        with self._lock:
            return [w for of_run in self._runs.values() for w in of_run]

    def _trip(self, message_id: str, reason: StopReason) -> None:
        with self._lock:
            tripped = list(self._runs.get(message_id, ()))
        for watch in tripped:
            watch.trip(reason)

    # -- the threads -------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            self._runs.clear()
            self.listening.clear()
        threading.Thread(target=self._listen, name="cancel-listener", daemon=True).start()
        threading.Thread(target=self._beat, name="run-heartbeat", daemon=True).start()

    def _listen(self) -> None:
        while True:  # one Retrying per connection: its waits start again after each success
            pubsub = Retrying(
                retry=retry_if_exception_type(Exception),  # Redis away: wait, then again
                wait=wait_exponential(multiplier=self._reconnect_delay, max=5.0),
            )(self._subscribe)
            try:
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        message_id = data.decode() if isinstance(data, bytes) else str(data)
                        self._trip(message_id, "cancelled")
            except Exception as exc:  # reconnect, then read every flag again
                log.warning("cancel listener lost Redis (%s); reconnecting", exc)
            finally:
                self.listening.clear()
                _close(pubsub)

    def _subscribe(self) -> PubSub:
        pubsub: PubSub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(CANCEL_CHANNEL)
            # Anything published while we were not subscribed is lost: read the flags.
            self._check_flags()
        except Exception:
            _close(pubsub)
            raise
        self.listening.set()
        return pubsub

    def _check_flags(self) -> None:
        message_ids = [w.message_id for w in self.watches()]
        if not message_ids:
            return
        flags = self._redis.mget([flag_key(m) for m in message_ids])
        for message_id, flag in zip(message_ids, flags, strict=True):
            if flag is not None:
                self._trip(message_id, "cancelled")

    def _beat(self) -> None:
        while True:
            time.sleep(self._beat_every)
            self.heartbeat()

    def heartbeat(self) -> None:
        """One statement for every run this process holds; a run found lost stops."""
        watches = [w for w in self.watches() if not w.requested()]
        if not watches:
            return
        try:
            with transaction(self._db) as session:
                still_ours = progress.heartbeat_many(session, [w.lease for w in watches])
        except Exception:  # a database blip must not end the runs by itself
            log.warning("could not heartbeat %d runs", len(watches), exc_info=True)
            return
        for watch in watches:
            if watch.lease.token not in still_ours:
                watch.trip("lost")


def _close(pubsub: PubSub) -> None:
    try:
        pubsub.close()
    except Exception:
        log.debug("could not close the cancel subscription", exc_info=True)


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
