"""The content flushes of all the runs of one worker process: one statement per tick.

Each run's recorder keeps the text it streamed since its last flush. Every `interval` this
process's flusher thread sends the new text of every run that has some as one statement in one
transaction (`progress.flush_many`), where a transaction per run per flush was a sixth of a busy
worker's CPU (README, Capacity). Each row is fenced by its run's lease; a run whose row was not
written is no longer ours and stops, as when its own flush finds that. A run still flushes by
itself when a tool call changes (at once, with its tool calls), never at the same time as this.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from models import transaction
from orchestrator.process_threads import ProcessThreads
from orchestrator.runs import progress
from orchestrator.runs.progress import Tail

log = logging.getLogger(__name__)

# Rows per statement: the batch is one JSON parameter, kept well under any driver's limits.
BATCH_ROWS = 500
# A flush interval of 0 (Settings.flush_interval) means "as often as it can", not a thread
# spinning on the database.
MIN_INTERVAL = 0.005


class Flushed(Protocol):
    """What the flusher needs of a run's recorder (handed to it with `add`)."""

    @property
    def closed(self) -> bool: ...

    def take_tail(self) -> Tail | None: ...

    def tail_sent(self, tail: Tail, written: bool | None) -> None: ...


class Flusher:
    def __init__(
        self, db: sessionmaker[Session], *, interval: float, threads: ProcessThreads | None = None
    ) -> None:
        self.db = db
        self.interval = interval
        self._lock = threading.Lock()
        self._recorders: dict[int, Flushed] = {}
        self._threads = threads or ProcessThreads()
        self._threads.own(self._start)

    def add(self, recorder: Flushed) -> None:
        """Flush this run's text from now on, until its recorder is closed."""
        self._threads.ensure()
        with self._lock:
            self._recorders[id(recorder)] = recorder

    def flush_all(self) -> int:
        """Send the new text of every run that has some; returns how many runs it sent."""
        with self._lock:
            for key in [k for k, recorder in self._recorders.items() if recorder.closed]:
                del self._recorders[key]  # a closed run is ours no more
            recorders = list(self._recorders.values())
        taken = [(recorder, tail) for recorder in recorders if (tail := recorder.take_tail())]
        for start in range(0, len(taken), BATCH_ROWS):
            batch = taken[start : start + BATCH_ROWS]
            written: set[str] | None = None
            try:
                with transaction(self.db) as session:
                    written = progress.flush_many(session, [tail for _recorder, tail in batch])
            except Exception:  # a database blip: the text goes with the next tick
                log.warning("could not flush %d runs; will try again", len(batch), exc_info=True)
            finally:
                for recorder, tail in batch:
                    ours = None if written is None else tail.lease.token in written
                    recorder.tail_sent(tail, ours)
        return len(taken)

    # -- the process's flushing thread -----------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            self._recorders.clear()  # a forked child holds none of its parent's runs
        threading.Thread(target=self._loop, name="content-flusher", daemon=True).start()

    def _loop(self) -> None:
        while True:
            time.sleep(max(self.interval, MIN_INTERVAL))
            try:
                self.flush_all()
            except Exception:  # the thread must outlive any one tick
                log.exception("content flush tick failed")
