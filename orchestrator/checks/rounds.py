"""A run's repair rounds: each time the model finishes, check; a failure goes back to it.

model finishes -> check -> passed: stop
                        -> failed: "Checks failed ..." as a user message, the loop goes on
at most `max_repairs` times, never past the run's last step, and not again once a round
fails with the same errors as the one before (the model is not getting anywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.checks.checker import Checker
from orchestrator.checks.result import FAILED, Round, repair_message
from orchestrator.sandboxes.base import Sandbox
from orchestrator.stop import Stop
from orchestrator.streams.events import Event


class Rounds:
    """The checks of one run; `checker` None: checks are off and every version is `skipped`."""

    def __init__(
        self,
        checker: Checker | None,
        *,
        max_repairs: int,
        started: Callable[[], Sandbox | None],
        build: Callable[[dict[str, str]], None],
        emit: Callable[[Event], None],
        stop: Stop,
    ) -> None:
        self.checker = checker
        self.max_repairs = max_repairs
        self._started = started
        self._build = build
        self._emit = emit
        self._stop = stop
        self.last: Round | None = None
        self.count = 0
        self.repairs = 0
        self._previous_errors: list[str] | None = None

    def after_finish(self, steps_left: int) -> str | None:
        """The agent loop's hook: the `Checks failed` message to go on with, or None to stop."""
        found = self.run()
        if found is None or found.status != FAILED:
            return None
        if self.repairs >= self.max_repairs or steps_left <= 0:
            return None
        if self.count > 1 and self._previous_errors == found.errors:
            return None  # the same failure twice: another round would not fix it
        self.repairs += 1
        return repair_message(found, self.count, self.max_repairs + 1)

    def run(self) -> Round | None:
        """One round, when there is an app to check (a tool touched the workspace)."""
        sandbox = self._started()
        if self.checker is None or sandbox is None:
            return None
        self._previous_errors = self.last.errors if self.last is not None else None
        self.last = self.checker.check(sandbox, self._build, self._emit, self._stop)
        self.count += 1
        return self.last

    @property
    def failed(self) -> bool:
        return self.last is not None and self.last.status == FAILED

    def metadata(self) -> dict[str, Any]:
        """The version's `metadata.checks`."""
        return (self.last or Round()).metadata(self.count)

    @property
    def screenshot(self) -> bytes | None:
        return self.last.render.screenshot if self.last is not None else None
