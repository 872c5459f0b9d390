"""What a run leaves: the whole app read back from its workspace, compared with its base."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from orchestrator.sandboxes.lazy import LazySandbox
from orchestrator.versions import changes
from orchestrator.versions.base import Base

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFiles:
    files: dict[str, str]
    changes: dict[str, list[str]]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def metadata(self, base: Base | None) -> dict[str, Any]:
        return {"skipped": self.skipped, "base": base.describe() if base else None}


def run_files(base: Base | None, sandbox: LazySandbox, written: dict[str, str]) -> RunFiles | None:
    """The base with this run's changes (write_file's and commands'), or None if none changed.

    A sandbox never started means no tool touched the workspace. When reading back fails (the
    sandbox died), the base with what write_file wrote is the best account of the run.
    """
    started = sandbox.started
    if started is None:
        return None
    # Against the base; a first version against the template the sandbox started with, if any.
    before = base.files if base is not None else sandbox.starting_files
    try:
        snapshot = started.snapshot()
        files, skipped = snapshot.files, snapshot.skipped
    except Exception as exc:
        log.warning("could not read the workspace of %s back: %s", started.id, exc)
        files = {**before, **written}
        skipped = [{"path": ".", "reason": f"the workspace could not be read back: {exc}"[:300]}]
    diff = changes.compute(before, files)
    if changes.is_empty(diff):
        return None
    return RunFiles(files, diff, skipped)


def first_changes(base: Base | None, produced: RunFiles) -> dict[str, list[str]] | None:
    """The changes to record when they are not against a parent (a template's first version)."""
    return produced.changes if base is None else None
