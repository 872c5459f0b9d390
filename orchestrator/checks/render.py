"""The render check of one page, in a fresh browser context: what a person opening it would see.

The preview is either served by request interception from the files it is made of (the local
sandbox: no server) or loaded from a live URL (the E2B dev server). Every request for another
origin is aborted and listed in `blocked`: a generated page can never make the worker fetch
anything.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from orchestrator.checks.result import FAILED, PASSED, RenderResult, cut

# Where the interception serves a preview: a name that never resolves, so a request the
# interception did not answer can go nowhere either.
SERVED_ORIGIN = "http://preview.appforge.invalid"
VIEWPORT = {"width": 1280, "height": 800}
LOAD_TIMEOUT_MS = 20_000
# After `load`: time for the app's scripts to render and throw (React mounts in a few ms).
SETTLE_MS = 600
MAX_LISTED = 50
# How long a live preview (E2B's dev server, just started) may take to answer at all.
LIVE_READY_SECONDS = 30.0
# Chromium's own line for a request that failed: the request itself is recorded already.
_RESOURCE_NOISE = "Failed to load resource"

# Whether anything in the body is visible: text, or an element that paints with a size.
VISIBLE = """() => {
  const body = document.body;
  if (!body) return false;
  if ((body.innerText || '').trim().length > 0) return true;
  const painted = 'img,svg,canvas,video,iframe,input,button,select,textarea,object,embed';
  for (const el of body.querySelectorAll(painted)) {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    const shown = style.visibility !== 'hidden' && style.display !== 'none';
    if (shown && box.width > 0 && box.height > 0) return true;
  }
  return false;
}"""


@dataclass(frozen=True)
class Target:
    """What to open: `url`, answered from `files` (path -> text) when they are given."""

    url: str
    files: dict[str, str] | None = None


def served(files: dict[str, str]) -> Target:
    return Target(SERVED_ORIGIN + "/", files)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _lookup(files: dict[str, str], url: str) -> tuple[str, str] | None:
    path = unquote(urlsplit(url).path).lstrip("/")
    for candidate in (path, f"{path.rstrip('/')}/index.html" if path else "index.html"):
        if candidate in files:
            return candidate, files[candidate]
    return None


async def _until_served(context: Any, url: str) -> None:
    """A dev server started with the preview takes a moment to answer: wait for it (bounded),
    so a server still starting is not reported as the app's failure."""
    deadline = time.monotonic() + LIVE_READY_SECONDS
    while time.monotonic() < deadline:
        try:
            response = await context.request.get(url, timeout=5_000, max_redirects=0)
            if response.status < 500:
                return
        except Exception:  # not listening yet
            pass
        await asyncio.sleep(0.5)


class _Seen:
    def __init__(self) -> None:
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.failed: list[str] = []
        self.blocked: list[str] = []

    def add_failed(self, path: str, why: str) -> None:
        """One line per file: a 404 script is also an aborted request, said once."""
        if not any(line.startswith(f"{path} (") for line in self.failed):
            self.add(self.failed, f"{path} ({why})")

    @staticmethod
    def add(found: list[str], item: str) -> None:
        if len(found) < MAX_LISTED and item not in found:
            found.append(item)


async def render(context: Any, target: Target) -> RenderResult:
    """Open `target` in `context` (a Playwright BrowserContext the caller closes)."""
    started = time.monotonic()
    seen = _Seen()
    home = _origin(target.url)

    async def route(request_route: Any) -> None:
        request = request_route.request
        if _origin(request.url) != home:
            seen.add(seen.blocked, cut(request.url, 300))
            await request_route.abort("blockedbyclient")
            return
        if target.files is None:
            await request_route.continue_()
            return
        found = _lookup(target.files, request.url)
        if found is None:
            seen.add_failed(urlsplit(request.url).path, "404 not found")
            await request_route.fulfill(status=404, body="not found", content_type="text/plain")
            return
        name, text = found
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        await request_route.fulfill(status=200, body=text, content_type=mime)

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith(_RESOURCE_NOISE):
            seen.add(seen.console_errors, cut(message.text))

    def on_response(response: Any) -> None:
        # A live server's own files (the interception records its 404s itself).
        if target.files is None and response.status >= 400 and _origin(response.url) == home:
            seen.add_failed(urlsplit(response.url).path, str(response.status))

    def on_request_failed(request: Any) -> None:
        if target.files is None and _origin(request.url) == home:
            seen.add_failed(urlsplit(request.url).path, str(request.failure))

    async def on_web_socket(socket_route: Any) -> None:
        # Never connected to its server: the page sees a socket that closes.
        seen.add(seen.blocked, cut(socket_route.url, 300))
        await socket_route.close()

    if target.files is None:
        await _until_served(context, target.url)
    await context.route("**/*", route)
    await context.route_web_socket("**/*", on_web_socket)
    page = await context.new_page()
    page.on("pageerror", lambda error: seen.add(seen.page_errors, cut(str(error))))
    page.on("console", on_console)
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    blank = False  # only a page that loaded can be called blank
    screenshot: bytes | None = None
    try:
        await page.goto(target.url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
        await page.wait_for_timeout(SETTLE_MS)
        blank = not await page.evaluate(VISIBLE)
        screenshot = await page.screenshot(type="png", timeout=LOAD_TIMEOUT_MS)
    except Exception as exc:  # the page never loaded: that is what the check found
        if "Target" in type(exc).__name__ or "closed" in str(exc):
            raise  # the context or browser went away under us: not the app's fault
        seen.add(seen.failed, cut(f"{urlsplit(target.url).path or '/'} did not load: {exc}"))
    failed = bool(seen.page_errors or seen.console_errors or seen.failed or blank)
    return RenderResult(
        status=FAILED if failed else PASSED,
        page_errors=tuple(seen.page_errors),
        console_errors=tuple(seen.console_errors),
        failed_requests=tuple(seen.failed),
        blocked=tuple(seen.blocked),
        blank=blank,
        duration_ms=int((time.monotonic() - started) * 1000),
        screenshot=screenshot,
    )
