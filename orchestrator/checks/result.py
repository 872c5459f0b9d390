"""What one round of checks found, and how it is told: to the model, to the user, to the record.

A round is a build and a render (DESIGN section 16). Its `errors` are the lines the model reads
in a `Checks failed` message and the lines two rounds are compared by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.contract import BuildCheck, Checks, RenderCheck

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
# What the model is told of a failed round: at most this many errors, in this many characters.
MAX_ERRORS = 20
MAX_CHARS = 4000
# One error line, cut: a minified stack or a long build log says enough in its first lines.
ERROR_CHARS = 600


def cut(text: str, limit: int = ERROR_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class BuildResult:
    status: str
    exit_code: int | None = None
    duration_ms: int = 0
    errors: tuple[str, ...] = ()

    def shape(self) -> BuildCheck:
        return BuildCheck(
            status=self.status,  # type: ignore[arg-type]
            exit_code=self.exit_code,
            duration_ms=self.duration_ms,
            errors=list(self.errors),
        )


@dataclass(frozen=True)
class RenderResult:
    status: str
    page_errors: tuple[str, ...] = ()
    console_errors: tuple[str, ...] = ()
    failed_requests: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    blank: bool = False
    duration_ms: int = 0
    # The page as it was painted (PNG, the viewport: 1280x800), when it could be taken.
    screenshot: bytes | None = field(default=None, repr=False)

    @property
    def errors(self) -> list[str]:
        found = [f"Uncaught error in the page: {e}" for e in self.page_errors]
        found += [f"Console error: {e}" for e in self.console_errors]
        found += [f"The app's own file failed to load: {e}" for e in self.failed_requests]
        if self.blank:
            found.append("The page is blank: nothing is visible in its body after it loaded.")
        return found

    def shape(self) -> RenderCheck:
        return RenderCheck(
            status=self.status,  # type: ignore[arg-type]
            page_errors=list(self.page_errors),
            console_errors=list(self.console_errors),
            failed_requests=list(self.failed_requests),
            blocked=list(self.blocked),
            blank=self.blank,
            duration_ms=self.duration_ms,
        )


NOT_BUILT = BuildResult(SKIPPED)
NOT_RENDERED = RenderResult(SKIPPED)


@dataclass(frozen=True)
class Round:
    build: BuildResult = NOT_BUILT
    render: RenderResult = NOT_RENDERED

    @property
    def status(self) -> str:
        statuses = {self.build.status, self.render.status}
        if FAILED in statuses:
            return FAILED
        return PASSED if PASSED in statuses else SKIPPED

    @property
    def errors(self) -> list[str]:
        return [f"Build: {e}" for e in self.build.errors] + self.render.errors

    def metadata(self, rounds: int) -> dict[str, Any]:
        """`metadata.checks` in the shape DESIGN section 16 pins."""
        shape = Checks(
            status=self.status,  # type: ignore[arg-type]
            rounds=rounds,
            build=self.build.shape(),
            render=self.render.shape(),
        )
        return shape.wire()


def repair_message(found: Round, round_number: int, last_round: int) -> str:
    """The `user` message a failed round becomes: it starts with `Checks failed`."""
    head = (
        f"Checks failed (round {round_number} of at most {last_round}): the app you left does "
        "not work yet. Fix these problems, check your fix, then call finish again.\n"
    )
    return head + _listed(found.errors, MAX_CHARS - len(head))


def still_failing(found: Round) -> str:
    """The words a saved version's content ends with when its checks still fail."""
    errors = found.errors
    first = errors[0] if errors else "a check failed"
    more = len(errors) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return (
        "\n\nNote: this version was saved, but its checks still fail: "
        f"{cut(first, 300)}{tail}. Ask for a fix in a follow-up prompt."
    )


def _listed(errors: list[str], budget: int) -> str:
    lines: list[str] = []
    used = 0
    for error in errors[:MAX_ERRORS]:
        line = f"- {cut(error)}\n"
        if used + len(line) > budget:
            break
        lines.append(line)
        used += len(line)
    left = len(errors) - len(lines)
    if left and used + 40 <= budget:
        lines.append(f"({left} more not shown)\n")
    return "".join(lines).rstrip("\n")
