"""A run's recorder and event sink: what it streamed, its tool calls, and when they are flushed.

Every event goes to the run's Redis Stream (what clients follow), through the process's
`Publisher` when there is one (coalesced, pipelined), and into the recorder. The text reaches
the message row with the process's `Flusher` (one statement for all its runs per tick) when the
runner hands the recorder to it, else by the recorder itself at least every `flush_interval`;
tool events are flushed at once by the run. A flush sends only the text added since the last one,
and the tool calls only when they changed, so a long run writes bytes in proportion to what it
streamed (not its square).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models import transaction
from orchestrator.runs import progress
from orchestrator.runs.lifecycle import Lease
from orchestrator.runs.progress import Tail
from orchestrator.streams.events import DeltaEvent, Event, EventLog, ToolCallEvent, ToolResultEvent
from orchestrator.streams.publisher import Publisher

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        db: sessionmaker[Session],
        events: EventLog,
        lease: Lease,
        *,
        flush_interval: float,
        publisher: Publisher | None = None,
        flushed_by_process: bool = False,
    ) -> None:
        self.db = db
        self.events = events
        self.publisher = publisher
        # True when the run's text goes with the process's flusher (its runner hands it there).
        self.flushed_by_process = flushed_by_process
        # True once closed: the flusher then forgets the run.
        self.closed = False
        self.lease = lease
        # How often the run flushes its text itself, when the process's flusher does not.
        self.flush_interval = flush_interval
        self.content: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        # True once a flush finds the run is no longer ours (cancelled, reaped).
        self.lost = False
        self.last_flush = time.monotonic()
        # How much of the text the row holds (0 at first, so a re-run's first flush rewrites it),
        # and the pieces streamed since.
        self._flushed_chars = 0
        self._unflushed: list[str] = []
        self._calls_changed = False
        # Held by whoever flushes (the run itself or the flusher), so two flushes never cross;
        # while the flusher holds it, the pieces it took are the first `_taken` of `_unflushed`.
        self._flushing = threading.Lock()
        self._taken = 0

    @property
    def text(self) -> str:
        return "".join(self.content)

    def add_text(self, text: str) -> None:
        self.content.append(text)
        self._unflushed.append(text)

    # -- what the run reports ----------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Publish one event and keep what it changes; flush when it is time."""
        force = False
        if isinstance(event, DeltaEvent):
            self.add_text(event.text)
        elif isinstance(event, ToolCallEvent):
            self.tool_calls.append(
                {"id": event.id, "name": event.name, "args": event.args, "result": None}
            )
            self._calls_changed = force = True
        elif isinstance(event, ToolResultEvent):
            for call in self.tool_calls:
                if call["id"] == event.id:
                    call["result"] = event.result
            self._calls_changed = force = True
        self.publish(event)
        if force or (
            not self.flushed_by_process
            and time.monotonic() - self.last_flush >= self.flush_interval
        ):
            self.flush()

    def flush(self) -> None:
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        self.last_flush = time.monotonic()
        batch = list(self._unflushed)
        tail = "".join(batch)
        calls = self.tool_calls if self._calls_changed else None
        try:
            with transaction(self.db) as session:
                written = progress.flush(
                    session, self.lease, tail=tail, after=self._flushed_chars, tool_calls=calls
                )
        except OperationalError:  # a database blip: what is not flushed goes with the next flush
            log.warning("could not flush %s; will try again", self.lease.message_id)
            return
        if not written:
            self.lost = True
            return
        self._flushed_chars += len(tail)
        del self._unflushed[: len(batch)]
        if calls is not None:
            self._calls_changed = False

    # -- what the process's flusher sends ------------------------------------------------------

    def take_tail(self) -> Tail | None:
        """The new text for the flusher, or None (nothing new, or the run is flushing itself).

        A tail taken must be given back with `tail_sent`.
        """
        if not self._flushing.acquire(blocking=False):
            return None
        self._taken = len(self._unflushed)
        if not self._taken:
            self._flushing.release()
            return None
        return Tail(self.lease, self._flushed_chars, "".join(self._unflushed[: self._taken]))

    def tail_sent(self, tail: Tail, written: bool | None) -> None:
        """The flusher wrote `tail` (written), found the run not ours (False), or failed (None)."""
        try:
            if written:
                self.last_flush = time.monotonic()
                self._flushed_chars += len(tail.text)
                del self._unflushed[: self._taken]
            elif written is False:
                self.lost = True
        finally:
            self._taken = 0
            self._flushing.release()

    # -- the event sink ----------------------------------------------------------------------

    def publish(self, *events: Event) -> None:
        if self.publisher is not None:
            self.publisher.add(self.lease.message_id, *events)
            return
        try:
            self.events.append(self.lease.message_id, *events)
        except redis.RedisError:  # the database keeps the outcome; live followers catch up from it
            log.warning("could not publish events of %s", self.lease.message_id, exc_info=True)

    def publish_now(self, *events: Event) -> None:
        """Publish and send at once, from this thread: the run's first entry must be in its
        stream before any of its text can reach the database. A client that found text in the
        database and no stream would take that text as a snapshot, then read it again from the
        stream once it appeared (orchestrator/streams/replay.py, "its log was lost")."""
        self.publish(*events)
        if self.publisher is not None:
            self.publisher.sync(self.lease.message_id)

    def close(self) -> None:
        """Send what is still queued for the run's stream (its events keep their order)."""
        self.closed = True  # the process's flusher takes no more of its text
        if self.publisher is not None:
            self.publisher.close(self.lease.message_id)

    def finish_stream(self, status: str, *events: Event) -> None:
        self.close()
        try:
            self.events.finish(self.lease.message_id, status, *events)
        except redis.RedisError:
            log.warning("could not close the event stream of %s", self.lease.message_id)

    # -- a re-run ------------------------------------------------------------------------------

    def carry_over(
        self, earlier_content: str, earlier_tool_calls: tuple[dict[str, Any], ...]
    ) -> None:
        """A re-run keeps what clients already saw, so the deltas still add up to the content.

        The stream is the record of what reached clients; the database may lag it by one flush.
        """
        streamed = self._streamed_text()
        earlier = streamed if streamed is not None else earlier_content
        if not earlier:
            return
        self.add_text(earlier)
        self.tool_calls.extend(dict(call) for call in earlier_tool_calls)
        self._calls_changed = True
        if streamed is None:  # the stream was lost: clients rebuild from the database
            return
        self.record(DeltaEvent("\n\n"))

    def _streamed_text(self) -> str | None:
        try:
            entries = self.events.read(self.lease.message_id, count=100_000)
        except redis.RedisError:
            return None
        if not entries:
            return None
        return "".join(data["text"] for _id, kind, data in entries if kind == "delta")
