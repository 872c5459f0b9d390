"""The one fork guard of a worker's background threads (orchestrator/process_threads.py).

Threads do not survive a fork: every part must start again in the child, once, and a part that
joins a guard already started in this process starts at once. A real fork, no stand-ins.
"""

from __future__ import annotations

import os
import select
import threading

from orchestrator.process_threads import ProcessThreads


class _Part:
    """A part as the flusher is one: forgets what it held, starts a thread that stays."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.alive = threading.Event()

    def start(self) -> None:
        self.starts.append(os.getpid())
        self.alive.clear()
        threading.Thread(target=self.alive.set, daemon=True).start()


def test_every_part_starts_once_per_process_and_a_late_one_at_once() -> None:
    guard = ProcessThreads()
    first, second = _Part(), _Part()
    guard.own(first.start)
    guard.own(second.start)
    assert first.starts == second.starts == []  # nothing runs before first use
    guard.ensure()
    guard.ensure()
    assert first.starts == second.starts == [os.getpid()]
    late = _Part()
    guard.own(late.start)  # the guard already started here: the late part starts now
    assert late.starts == [os.getpid()]
    guard.ensure()
    assert [first.starts, second.starts, late.starts] == [[os.getpid()]] * 3


def test_a_forked_child_starts_every_part_again_in_itself() -> None:
    guard = ProcessThreads()
    parts = [_Part(), _Part()]
    for part in parts:
        guard.own(part.start)
    guard.ensure()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its first use starts both parts' threads here
        try:
            guard.ensure()
            guard.ensure()
            ok = all(p.starts.count(os.getpid()) == 1 and p.alive.wait(10) for p in parts)
            os.write(write_end, b"started" if ok else repr([p.starts for p in parts]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 30)
        assert ready, "the forked child did not answer within 30 s"
        answer = os.read(read_end, 1000).decode()
    finally:
        os.close(read_end)
        os.waitpid(child, 0)
    assert answer == "started"
    assert [p.starts for p in parts] == [[os.getpid()]] * 2  # the parent's started once
