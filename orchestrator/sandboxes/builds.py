"""A framework app's build in the local sandbox: which command is one, and what it left.

The model runs the build itself (`run_command`, e.g. `npm run build`); its output folder is
read back as the version's preview and kept out of the version's files, which stay the sources.
Each build remembers a digest of the sources it built, so the runner can tell a version whose
last build is of other sources (the model changed a file after it, or never built) and build it
once more itself. A failed build is served as a page that shows its error, never as the output
an earlier build left behind.
"""

from __future__ import annotations

import hashlib
import html
import os
import stat
from pathlib import Path

from orchestrator.sandboxes.base import CommandResult
from orchestrator.sandboxes.paths import resolve_inside
from orchestrator.sandboxes.snapshot import Snapshot, read_tree
from orchestrator.sandboxes.templates import TemplateSpec

PASSED, FAILED = "passed", "failed"


def names_build(spec: TemplateSpec, command: str) -> bool:
    return any(words in command for words in (spec.build_command, *spec.build_words))


def outcome(command: str, result: CommandResult) -> dict[str, object]:
    """What the fragment records of the last build (`metadata.build`)."""
    return {
        "status": PASSED if result.exit_code == 0 else FAILED,
        "command": command[:200],
        "exitCode": result.exit_code,
    }


def read_output(workspace: Path, spec: TemplateSpec) -> Snapshot | None:
    """The output folder's text files (capped as a version is), or None when there is none.

    Never through a symlink: the folder itself and everything in it are read as `read_tree`
    reads a workspace.
    """
    try:
        folder = resolve_inside(workspace, spec.output_dir)
        mode = os.lstat(workspace / spec.output_dir).st_mode
    except (OSError, ValueError):
        return None
    if not stat.S_ISDIR(mode) or not folder.is_dir():
        return None
    output = read_tree(folder)
    return output if "index.html" in output.files else None


def leave_out_output(snapshot: Snapshot, spec: TemplateSpec) -> None:
    """Drop the build output from a workspace's snapshot: a version holds the sources only."""
    prefix = spec.output_dir.split("/", 1)[0] + "/"
    dropped = [path for path in snapshot.files if path.startswith(prefix)]
    for path in dropped:
        snapshot.total_bytes -= len(snapshot.files.pop(path).encode())
    if dropped:
        snapshot.skip(prefix, "build output")


def digest(files: dict[str, str]) -> str:
    """What identifies a set of sources: their paths and contents."""
    hashed = hashlib.sha256()
    for path in sorted(files):
        for part in (path, files[path]):
            data = part.encode()
            hashed.update(len(data).to_bytes(8, "big"))
            hashed.update(data)
    return hashed.hexdigest()


FAILURE_TAIL_CHARS = 4000


def failure_page(command: str, result: CommandResult) -> Snapshot:
    """What the preview of a version whose build failed serves: the command and its error."""
    output = (result.stdout + "\n" + result.stderr).strip()
    if len(output) > FAILURE_TAIL_CHARS:
        output = "…" + output[-FAILURE_TAIL_CHARS:]
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>The build failed</title>"
        "<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#222}"
        "pre{background:#f6f6f6;padding:1rem;overflow:auto;white-space:pre-wrap}</style>"
        "</head><body><h1>The build failed</h1>"
        f"<p>This version's sources did not build: <code>{html.escape(command)}</code> exited "
        f"with code {result.exit_code}. Ask for a fix in a follow-up prompt.</p>"
        f"<pre>{html.escape(output)}</pre></body></html>\n"
    )
    snapshot = Snapshot()
    snapshot.add("index.html", page.encode())
    return snapshot
