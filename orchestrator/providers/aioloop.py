"""One asyncio loop in a daemon thread per process, so a blocked LLM read can be abandoned.

Provider calls run as tasks on this loop; cancelling the task closes the HTTP connection, which
a thread blocked in a synchronous socket read could never do. The loop is one of the worker
process's threads (`process_threads.PROCESS`): started on first use, after any fork, never
inherited across one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from orchestrator.process_threads import PROCESS

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None


def _start() -> None:
    global _loop
    ready = threading.Event()
    new_loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(new_loop)
        new_loop.call_soon(ready.set)
        new_loop.run_forever()

    threading.Thread(target=run, name="llm-io", daemon=True).start()
    ready.wait()
    _loop = new_loop


PROCESS.own(_start)


def loop() -> asyncio.AbstractEventLoop:
    """The process's loop, started with the process's other threads on first use."""
    PROCESS.ensure()
    assert _loop is not None
    return _loop


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    return asyncio.run_coroutine_threadsafe(coro, loop())
