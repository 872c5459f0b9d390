"""The event sink of all the runs of one worker process: appends coalesced into pipelined writes.

A run hands its events over without waiting on Redis; one thread per process sends what every
run added over the last few milliseconds as one pipeline (consecutive deltas of a run joined into
one), so 500 runs streaming 30 chunks a second cost a few hundred round trips a second, not
15,000. `sync(run)` sends a run's events at once, in order, before anything it sends itself (a
tool call, the run's last events): per run the order of events is the order they were added.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import redis

from orchestrator.process_threads import ProcessThreads
from orchestrator.streams.events import DeltaEvent, Event, EventLog

log = logging.getLogger(__name__)

# How long a delta may wait for others to share its write; well inside the 50 ms of DESIGN 14.
COALESCE_SECONDS = 0.005


@dataclass
class _Outbox:
    events: list[Event] = field(default_factory=list)
    # Held while this run's events are taken and sent, so two sends of one run never cross.
    sending: threading.Lock = field(default_factory=threading.Lock)


def coalesce(events: list[Event]) -> list[Event]:
    """Consecutive deltas joined into one (clients rebuild the content by joining deltas)."""
    joined: list[Event] = []
    texts: list[str] = []
    for event in events:
        if isinstance(event, DeltaEvent):
            texts.append(event.text)
            continue
        if texts:
            joined.append(DeltaEvent("".join(texts)))
            texts = []
        joined.append(event)
    if texts:
        joined.append(DeltaEvent("".join(texts)))
    return joined


class Publisher:
    def __init__(
        self,
        events: EventLog,
        *,
        window: float = COALESCE_SECONDS,
        threads: ProcessThreads | None = None,
    ) -> None:
        self.events = events
        self.window = window
        self._lock = threading.Lock()
        self._outboxes: dict[str, _Outbox] = {}
        self._dirty: set[str] = set()
        self._wake = threading.Event()
        self._threads = threads or ProcessThreads()
        self._threads.own(self._start)

    def add(self, message_id: str, *events: Event) -> None:
        """Queue events of a run; they are sent within about `window` seconds."""
        self._threads.ensure()
        with self._lock:
            self._outboxes.setdefault(message_id, _Outbox()).events.extend(events)
            self._dirty.add(message_id)
        self._wake.set()

    def sync(self, message_id: str) -> None:
        """Send what the run queued, now, from the caller's thread."""
        with self._lock:
            box = self._outboxes.get(message_id)
        if box is None:
            return
        with box.sending:
            with self._lock:
                taken, box.events = box.events, []
                self._dirty.discard(message_id)
            if taken:
                self._send({message_id: coalesce(taken)})

    def close(self, message_id: str) -> None:
        """The run is over: send what is left and forget it."""
        self.sync(message_id)
        with self._lock:
            self._outboxes.pop(message_id, None)
            self._dirty.discard(message_id)

    # -- the process's sending thread ------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            self._outboxes.clear()
            self._dirty.clear()
        threading.Thread(target=self._loop, name="event-publisher", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            # Let the deltas of the next few milliseconds join this write.
            time.sleep(self.window)
            self._wake.clear()
            self.send_dirty()

    def send_dirty(self) -> None:
        with self._lock:
            self._dirty &= self._outboxes.keys()  # a run closed meanwhile has nothing left
            boxes = [(m, self._outboxes[m]) for m in self._dirty]
        locked: list[_Outbox] = []
        batch: dict[str, list[Event]] = {}
        try:
            for message_id, box in boxes:
                if not box.sending.acquire(blocking=False):
                    continue  # the run is sending itself; it takes its own events
                locked.append(box)
                with self._lock:
                    taken, box.events = box.events, []
                    self._dirty.discard(message_id)
                if taken:
                    batch[message_id] = coalesce(taken)
            if batch:
                self._send(batch)
        finally:
            for box in locked:
                box.sending.release()
        with self._lock:
            if self._dirty:
                self._wake.set()

    def _send(self, batch: dict[str, list[Event]]) -> None:
        try:
            self.events.append_many(batch)
        except redis.RedisError:  # the database keeps the outcome; live followers catch up from it
            log.warning("could not publish events of %d runs", len(batch), exc_info=True)
