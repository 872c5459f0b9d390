"""Deltas handed from the process's asyncio loop to the run's thread, in batches.

The loop adds each delta as it is parsed; the run's thread takes everything added since it last
looked, with consecutive text joined into one delta. A busy thread therefore wakes once per
batch, not once per chunk: under load the cost of a chunk on the run's thread (waking it,
recording, publishing) is shared by every chunk that arrived meanwhile, while an idle thread
still wakes for each chunk at once. Joining text changes nothing a client sees: its content is
the concatenation of the deltas.
"""

from __future__ import annotations

import threading

from orchestrator.providers.base import Delta, TextDelta

# Marks the end of the stream, or a wake-up with nothing to take (a cancel to look at).
END = object()
WAKE = object()

Item = Delta | BaseException | object


class Handoff:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._items: list[Item] = []

    def put(self, item: Item) -> None:
        """From the loop: add one delta (or END, WAKE, an error). Never blocks on the reader."""
        with self._lock:
            items = self._items
            if isinstance(item, TextDelta) and items and isinstance(items[-1], TextDelta):
                items[-1] = TextDelta(items[-1].text + item.text)
                return  # the reader was woken for the text already there
            items.append(item)
            if len(items) == 1:
                self._ready.set()

    def take(self, timeout: float) -> list[Item]:
        """From the run's thread: all items added since the last take; [] after `timeout`."""
        if not self._ready.wait(timeout):
            return []
        with self._lock:
            taken, self._items = self._items, []
            self._ready.clear()
        return taken
