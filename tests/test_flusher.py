"""The process's content flusher: one statement for the new text of all its runs (DESIGN 14).

Real database (SQLite or PostgreSQL, as the suite runs); the rows are made here, no worker runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from models import Message, Status, transaction
from orchestrator.runs.flusher import Flusher
from orchestrator.runs.lifecycle import Lease
from orchestrator.runs.recorder import Recorder
from orchestrator.streams.events import DeltaEvent, EventLog, ToolCallEvent
from tests.test_run_hub import streaming_runs  # noqa: F401  (a fixture)


def _content(db: Any, message_id: str) -> str:
    with transaction(db) as session:
        return str(session.scalar(select(Message.content).where(Message.id == message_id)))


def _recorder(db: Any, lease: Lease, flusher: Flusher, redis_client: Any) -> Recorder:
    # A flush interval far away: only the flusher (or a tool event) may write the row.
    recorder = Recorder(
        db, EventLog(redis_client), lease, flush_interval=3600.0, flushed_by_process=True
    )
    flusher.add(recorder)  # handed to the flusher, as the runner does
    return recorder


def test_one_tick_writes_the_new_text_of_every_run_and_only_what_is_new(
    db: Any,
    redis_client: Any,
    streaming_runs: Callable[[int], list[Lease]],  # noqa: F811
) -> None:
    leases = streaming_runs(3)
    flusher = Flusher(db, interval=3600.0)  # ticks by hand here
    recorders = [_recorder(db, lease, flusher, redis_client) for lease in leases]
    for n, recorder in enumerate(recorders):
        recorder.record(DeltaEvent(f"run {n}: "))
        recorder.record(DeltaEvent("hello"))
    assert [_content(db, lease.message_id) for lease in leases] == ["", "", ""]

    assert flusher.flush_all() == 3
    assert [_content(db, lease.message_id) for lease in leases] == [
        "run 0: hello", "run 1: hello", "run 2: hello"
    ]  # fmt: skip
    recorders[1].record(DeltaEvent(", world"))
    assert flusher.flush_all() == 1  # the others have nothing new
    assert _content(db, leases[1].message_id) == "run 1: hello, world"
    assert flusher.flush_all() == 0
    for recorder in recorders:
        recorder.close()
    recorders[0].record(DeltaEvent(" (after close)"))
    assert flusher.flush_all() == 0  # a closed run is the flusher's no more


def test_a_run_that_is_no_longer_ours_is_not_written_and_learns_it_is_lost(
    db: Any,
    redis_client: Any,
    streaming_runs: Callable[[int], list[Lease]],  # noqa: F811
) -> None:
    ours, cancelled = streaming_runs(2)
    flusher = Flusher(db, interval=3600.0)
    kept, lost = (_recorder(db, lease, flusher, redis_client) for lease in (ours, cancelled))
    with transaction(db) as session:
        session.execute(
            update(Message)
            .where(Message.id == cancelled.message_id)
            .values(status=Status.CANCELLED, content="cancelled by the user")
        )
    kept.record(DeltaEvent("mine"))
    lost.record(DeltaEvent("not any more"))

    flusher.flush_all()
    assert _content(db, ours.message_id) == "mine" and not kept.lost
    assert _content(db, cancelled.message_id) == "cancelled by the user"
    assert lost.lost  # the run stops at its next look (RunStop)


def test_a_run_flushing_itself_is_skipped_and_nothing_is_written_twice(
    db: Any,
    redis_client: Any,
    streaming_runs: Callable[[int], list[Lease]],  # noqa: F811
) -> None:
    (lease,) = streaming_runs(1)
    flusher = Flusher(db, interval=3600.0)
    recorder = _recorder(db, lease, flusher, redis_client)
    recorder.record(DeltaEvent("before the call. "))
    tail = recorder.take_tail()  # the flusher holds the run's flush...
    assert tail is not None and tail.text == "before the call. "
    assert flusher.flush_all() == 0  # ...so another tick skips it
    recorder.tail_sent(tail, None)  # that tick failed (a database blip): the text stays due
    # A tool event flushes at once, from the run itself, with the text so far.
    recorder.record(ToolCallEvent("c1", "write_file", {"path": "a.txt", "content": "x"}))
    assert _content(db, lease.message_id) == "before the call. "
    recorder.record(DeltaEvent("after."))
    assert flusher.flush_all() == 1
    assert _content(db, lease.message_id) == "before the call. after."
    recorder.close()
