"""One headless Chromium per worker process, shared by its runs' render checks.

Playwright's sync API is bound to the thread that started it, and a worker's runs are threads:
so the browser lives on an asyncio loop in a thread of its own, each check a task on it in a
fresh context. At most `concurrency` checks run at once; the others wait their turn, and a run
cancelled while it waits or while its page renders stops at once (its context is closed).
Always the machine's Chromium (`executable_path`), never a browser Playwright downloads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shutil
import threading
from typing import Any

from orchestrator.checks.render import VIEWPORT, Target, render
from orchestrator.checks.result import RenderResult
from orchestrator.providers.base import Cancelled
from orchestrator.stop import Stop

log = logging.getLogger(__name__)

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# How often a waiting or rendering check looks at its run's cancel flag.
POLL = 0.1
# A render never takes longer than this, whatever the page does.
RENDER_TIMEOUT = 60.0
LAUNCH_ARGS = [
    "--no-sandbox",  # the worker's user is not privileged enough for Chromium's own sandbox
    "--disable-dev-shm-usage",
    "--disable-gpu",
    # Belt and braces under the request interception: no host name resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def find_chromium() -> str | None:
    """The machine's Chromium (Debian's package `chromium`), or None."""
    for path in CHROMIUM_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """The process's browser: started on first use, restarted if it died, contexts counted."""

    def __init__(
        self,
        executable: str,
        concurrency: int,
        *,
        resolve_hosts: bool = False,
        proxy: str | None = None,
        ignore_https_errors: bool = False,
    ) -> None:
        """`proxy` and `ignore_https_errors`: how a test puts the fake E2B's edge, with its own
        certificate, in front of the previews' https URLs (the page and its readiness probe)."""
        self.executable = executable
        self._slots = threading.BoundedSemaphore(concurrency)
        # E2B previews are on the internet: their host names must resolve.
        self._args = [a for a in LAUNCH_ARGS if not (resolve_hosts and "resolver" in a)]
        self._proxy = {"server": proxy} if proxy is not None else None
        self._ignore_https_errors = ignore_https_errors
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock = threading.Lock()
        self._playwright: Any = None
        self._browser: Any = None
        # Checks waiting for their turn now (beyond `concurrency`).
        self.waiting = 0
        self._waiting_lock = threading.Lock()

    def render(self, target: Target, stop: Stop) -> RenderResult:
        """Render `target`; Cancelled as soon as `stop.requested()` says so."""
        self._wait_turn(stop)
        try:
            future = asyncio.run_coroutine_threadsafe(self._render(target), self._running_loop())
            waited = 0.0
            while True:
                try:
                    return future.result(timeout=POLL)
                except concurrent.futures.TimeoutError:
                    waited += POLL
                    if stop.requested():
                        future.cancel()  # the task's `finally` closes its context
                        raise Cancelled() from None
                    if waited > RENDER_TIMEOUT:
                        future.cancel()
                        raise
        finally:
            self._slots.release()

    def _wait_turn(self, stop: Stop) -> None:
        if self._slots.acquire(blocking=False):
            return
        with self._waiting_lock:
            self.waiting += 1
        try:
            while not self._slots.acquire(timeout=POLL):
                if stop.requested():
                    raise Cancelled()
        finally:
            with self._waiting_lock:
                self.waiting -= 1

    def open_contexts(self) -> int:
        """The browser contexts open now (one per check under way), as Chromium counts them."""
        if self._loop is None:
            return 0

        async def count() -> int:
            return len(self._browser.contexts) if self._browser is not None else 0

        return asyncio.run_coroutine_threadsafe(count(), self._loop).result(timeout=30)

    def close(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)

    def memory_bytes(self) -> int:
        """The resident memory of the browser's processes (Linux), 0 when none runs."""
        # Playwright does not name the browser's pid: count the Chromium processes under ours.
        total = 0
        for pid in _descendants(os.getpid()):
            try:
                with open(f"/proc/{pid}/comm") as comm:
                    if "chrom" not in comm.read():
                        continue
                with open(f"/proc/{pid}/statm") as statm:
                    total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError):
                continue
        return total

    # -- on the browser's loop ---------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None or not self._loop.is_running():
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="checks-browser", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop

    async def _ensure(self) -> Any:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        from playwright.async_api import async_playwright

        if self._playwright is None:
            self._playwright = await async_playwright().start()
        elif self._browser is not None:
            log.warning("the checks' Chromium died; starting it again")
        self._browser = await self._playwright.chromium.launch(
            executable_path=self.executable, args=self._args, headless=True, proxy=self._proxy
        )
        return self._browser

    async def _render(self, target: Target) -> RenderResult:
        browser = await self._ensure()
        opening = asyncio.ensure_future(
            browser.new_context(
                viewport=VIEWPORT,
                service_workers="block",
                accept_downloads=False,
                ignore_https_errors=self._ignore_https_errors,
            )
        )
        try:
            context = await asyncio.shield(opening)
        except asyncio.CancelledError:  # cancelled while Chromium opened it: close it once open
            opening.add_done_callback(_close_when_opened)
            raise
        try:
            return await render(context, target)
        finally:
            await asyncio.shield(_close(context))

    async def _stop(self) -> None:
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None


def _close_when_opened(opening: asyncio.Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        asyncio.ensure_future(_close(opening.result()))


async def _close(context: Any) -> None:
    try:
        await context.close()
    except Exception:  # the browser went away with it
        log.debug("could not close a check's browser context", exc_info=True)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
