"""One round of checks of the app a run leaves (DESIGN section 16): build, then render.

    build  = the sandbox's last build, if it is of these sources; else the runner builds now
    render = the build output (or the static files, or the E2B dev server) in a headless Chromium

The build is the one the runner already runs when the model left its change unbuilt: a round
asks for it and reads the sandbox's record, it never builds a second time.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from orchestrator.checks.browser import Browser
from orchestrator.checks.render import Target, served
from orchestrator.checks.result import (
    FAILED,
    NOT_BUILT,
    NOT_RENDERED,
    PASSED,
    BuildResult,
    RenderResult,
    Round,
    cut,
)
from orchestrator.sandboxes.base import Builds, CommandResult, Sandbox
from orchestrator.stop import Stop
from orchestrator.streams.events import CheckEvent, Event

# The lines of a build's output that name what failed; without any, its last lines.
_ERROR_LINE = re.compile(r"error|ERR!|failed|cannot|unexpected|not found|✘", re.IGNORECASE)
BUILD_ERROR_LINES = 12


class Checker:
    """The checks of one worker process; `browser` None: no render check (PREVIEW_CHECK=off)."""

    def __init__(self, browser: Browser | None) -> None:
        self.browser = browser

    def check(
        self,
        sandbox: Sandbox,
        build: Callable[[dict[str, str]], None],
        emit: Callable[[Event], None],
        stop: Stop,
    ) -> Round:
        """`build(sources)` builds them unless the sandbox's last build was of them."""
        built = self._build(sandbox, build, emit)
        if built.status == FAILED or self.browser is None:
            return Round(built, NOT_RENDERED)
        emit(CheckEvent("render", "running"))
        target = _target(sandbox, built)
        if target is None:
            rendered = RenderResult(FAILED, failed_requests=("index.html (the build left none)",))
        else:
            rendered = self.browser.render(target, stop)
        emit(CheckEvent("render", rendered.status, tuple(rendered.errors) or None))
        return Round(built, rendered)

    def _build(
        self,
        sandbox: Sandbox,
        build: Callable[[dict[str, str]], None],
        emit: Callable[[Event], None],
    ) -> BuildResult:
        if not isinstance(sandbox, Builds) or sandbox.build_command is None:
            return NOT_BUILT  # a static app, or a dev server that builds as it serves
        emit(CheckEvent("build", "running"))
        build(sandbox.snapshot().files)
        record = sandbox.build or {}
        result: CommandResult | None = getattr(sandbox, "build_result", None)
        passed = record.get("status") == PASSED
        exit_code = result.exit_code if result is not None else None
        found = BuildResult(
            status=PASSED if passed else FAILED,
            exit_code=exit_code,
            duration_ms=int(getattr(sandbox, "build_duration_ms", 0)),
            errors=() if passed else _build_errors(result),
        )
        emit(CheckEvent("build", found.status, found.errors or None))
        return found


def _target(sandbox: Sandbox, built: BuildResult) -> Target | None:
    url = sandbox.preview()
    if url is not None:
        return Target(url)  # a live server (E2B's dev server)
    if built is not NOT_BUILT and isinstance(sandbox, Builds):
        output = sandbox.build_output()
        return served(output.files) if output is not None else None
    return served(sandbox.snapshot().files)


def _build_errors(result: CommandResult | None) -> tuple[str, ...]:
    if result is None:
        return ("the build did not run",)
    if result.timed_out:
        return ("the build timed out",)
    lines = [line.rstrip() for line in (result.stdout + "\n" + result.stderr).splitlines()]
    lines = [line for line in lines if line.strip()]
    picked = [line for line in lines if _ERROR_LINE.search(line)] or lines[-BUILD_ERROR_LINES:]
    found = [cut(line, 400) for line in picked[:BUILD_ERROR_LINES]]
    return tuple(found) or (f"the build exited with code {result.exit_code}",)
