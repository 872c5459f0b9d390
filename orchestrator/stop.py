"""Why a run must stop, and how a waiter learns it at once: what the engine's loops look at.

A `Stop` is handed down runner -> agent -> provider chain -> provider, and to the checks. Each
loop asks `requested()` between steps; one that blocks (waiting for the model's next chunk, for
a browser) subscribes with `on_request(wake)` so a cancel wakes it instead of a poll. `reason`
says which stop it is, so "cancelled" means the user's cancel and nothing else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal, Protocol

log = logging.getLogger(__name__)

# "cancelled": the user's DELETE; "lost": the run is no longer this worker's (reaped, taken
# over, or its row changed under it); "deadline": the run went past RUN_DEADLINE.
StopReason = Literal["cancelled", "lost", "deadline"]


class Stop(Protocol):
    @property
    def reason(self) -> StopReason | None:
        """Why the run must stop, or None while it may go on."""
        ...

    def requested(self) -> bool:
        """True once the run must stop (`reason` is then set)."""
        ...

    def on_request(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake` (maybe from another thread) when a stop is requested; returns its
        unsubscribe. A stop found only by looking (a deadline) wakes nobody: waiters still look
        now and then."""
        ...


class StopFlag:
    """A Stop set by `request(reason)`; the first reason wins and wakes every subscriber once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []
        self._reason: StopReason | None = None

    @property
    def reason(self) -> StopReason | None:
        return self._reason

    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def on_request(self, wake: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._wakers.append(wake)
        if self._event.is_set():
            wake()

        def unsubscribe() -> None:
            with self._lock:
                if wake in self._wakers:
                    self._wakers.remove(wake)

        return unsubscribe

    def request(self, reason: StopReason) -> bool:
        """Stop for `reason`; False (and nothing changes) when a stop was requested already."""
        with self._lock:
            if self._event.is_set():
                return False
            self._reason = reason
            self._event.set()
            wakers = list(self._wakers)
        for wake in wakers:
            try:
                wake()
            except Exception:
                log.exception("a stop's wake-up failed")
        return True


def never() -> StopFlag:
    """A Stop nobody requests (a benchmark's or a test's run)."""
    return StopFlag()
