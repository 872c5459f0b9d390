"""A command's output, bounded while it runs: its head and its tail, the middle counted and
dropped (DESIGN section 17: a build's error is usually at the end of its log)."""

from __future__ import annotations

import codecs


class HeadTailBytes:
    """Up to `limit` bytes of one output stream: its first half and its last half."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit // 2 - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            keep = self.limit - self.limit // 2
            if len(self.tail) > 2 * keep:  # trimmed now and then, not on every chunk
                del self.tail[:-keep]

    def text(self) -> str:
        if not self.truncated:
            return (self.head + self.tail).decode("utf-8", errors="replace")
        note = _note(self.total, "bytes")
        room = max(0, self.limit - len(note.encode()))
        head, tail = bytes(self.head[: room // 2]), bytes(self.tail[-(room - room // 2) :])
        # A decode of a cut multi-byte character would give U+FFFD: drop the cut piece instead.
        start = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(head, final=False)
        return start + note + tail.decode("utf-8", errors="ignore")


class HeadTailText:
    """Up to `limit` characters of one output stream: its first half and its last half."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._head: list[str] = []
        self._kept = 0
        self._tail = ""
        self.total = 0

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def add(self, chunk: str) -> None:
        self.total += len(chunk)
        room = self.limit // 2 - self._kept
        if room > 0:
            self._head.append(chunk[:room])
            self._kept += min(room, len(chunk))
            chunk = chunk[room:]
        if chunk:
            keep = self.limit - self.limit // 2
            self._tail = (self._tail + chunk)[-keep:]

    @property
    def text(self) -> str:
        head = "".join(self._head)
        if not self.truncated:
            return head + self._tail
        note = _note(self.total, "characters")
        room = max(0, self.limit - len(note))
        return head[: room // 2] + note + self._tail[len(self._tail) - (room - room // 2) :]


def _note(total: int, unit: str) -> str:
    return f"\n[output truncated: {total} {unit} in all; the start and the end are shown]\n"
