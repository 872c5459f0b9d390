"""What a run leaves: the whole app read back from its workspace, compared with its base."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from orchestrator.sandboxes.lazy import LazySandbox
from orchestrator.versions import changes
from orchestrator.versions.base import BaseVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFiles:
    files: dict[str, str]
    changes: dict[str, list[str]]
    skipped: list[dict[str, str]] = field(default_factory=list)
    # A first version's starting point (its template) where it differs from it: the content of
    # each path it modified or deleted, so its diff can be against the template, as `changes` are.
    starting: dict[str, str] = field(default_factory=dict)

    def metadata(self, base: BaseVersion | None) -> dict[str, Any]:
        found: dict[str, Any] = {"skipped": self.skipped, "base": base.describe() if base else None}
        if self.starting:
            found[changes.STARTING_FILES] = self.starting
        return found


def run_files(
    base: BaseVersion | None, sandbox: LazySandbox, written: dict[str, str]
) -> RunFiles | None:
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
    starting = {} if base is not None else changes.replaced(before, diff)
    return RunFiles(files, diff, skipped, starting)


def first_changes(base: BaseVersion | None, produced: RunFiles) -> dict[str, list[str]] | None:
    """The changes to record when they are not against a parent (a template's first version)."""
    return produced.changes if base is None else None
