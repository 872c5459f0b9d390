"""The one fork guard of a worker process's background threads.

A worker process shares a few threads among all its runs: the content flusher, the event
publisher, the cancel listener and heartbeat, and the asyncio loop of the LLM reads. Threads do
not survive a fork, so each must start in the process that uses it, once. `ProcessThreads` is that
"once per process id" in one place: the parts hand it how they start (`own`), and the first use in
a process (`ensure`) starts them all, a part joining later starting at once. `PROCESS` is the
worker's: `wiring.services` hands it to the flusher, publisher and run hub, and the asyncio loop
joins it on import; a part built on its own (a test, a benchmark) gets a guard of its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class ProcessThreads:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._starts: list[Callable[[], None]] = []

    def own(self, start: Callable[[], None]) -> None:
        """Start this part with the others: now if they already run in this process."""
        with self._lock:
            self._starts.append(start)
            if self._pid == os.getpid():
                start()

    def ensure(self) -> None:
        """Start every part, once per process (after a fork, again in the child)."""
        if self._pid == os.getpid():
            return  # started here: no lock, which every run's every event would take
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            for start in self._starts:  # each forgets what its parent held, starts its thread
                start()


PROCESS = ProcessThreads()
