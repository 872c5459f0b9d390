"""A version's caps reach the model as tool errors when it writes, and bound what is read back."""

from __future__ import annotations

from pathlib import Path

from orchestrator.runs.tools import Workspace
from orchestrator.sandboxes.lazy import LazySandbox
from orchestrator.sandboxes.local import LocalSandboxFactory
from orchestrator.sandboxes.snapshot import VersionBudget


def test_write_file_past_the_version_caps_is_a_tool_error_and_writes_nothing(
    sandbox_root: str,
) -> None:
    factory = LocalSandboxFactory(Path(sandbox_root), isolation="none")
    base = {"index.html": "x" * 60}
    lazy = LazySandbox(
        lambda: factory.create("limits-run", "NEXTJS"),
        seed=base,
        budget=VersionBudget.holding(base, max_bytes=100, max_files=2),
    )
    workspace = Workspace(lazy)
    try:
        too_big = workspace.call("write_file", {"path": "app.js", "content": "y" * 41})
        assert "over the 100 bytes a version holds" in too_big["error"]
        fits = workspace.call("write_file", {"path": "app.js", "content": "y" * 40})
        assert fits["success"] is True
        # Rewriting a file counts its new size, not both.
        smaller = workspace.call("write_file", {"path": "index.html", "content": "x" * 10})
        assert smaller["success"] is True
        too_many = workspace.call("write_file", {"path": "third.css", "content": "z"})
        assert "more than 2 files" in too_many["error"]
        snapshot = lazy.snapshot()
        assert snapshot.files == {"index.html": "x" * 10, "app.js": "y" * 40}
    finally:
        lazy.kill()
