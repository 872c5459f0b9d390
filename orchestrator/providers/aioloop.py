"""One asyncio loop in a daemon thread per process, so a blocked LLM read can be abandoned.

Provider calls run as tasks on this loop; cancelling the task closes the HTTP connection, which
a thread blocked in a synchronous socket read could never do.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The process's loop, started on first use (after any fork, never inherited across one)."""
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or not _loop.is_running():
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            threading.Thread(target=run, name="llm-io", daemon=True).start()
            ready.wait()
            _loop, _pid = new_loop, os.getpid()
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    return asyncio.run_coroutine_threadsafe(coro, loop())
