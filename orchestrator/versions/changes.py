"""What changed between two versions of an app: sorted paths, and unified diffs per file."""

from __future__ import annotations

import difflib
from typing import Any

CHANGE_KINDS = ("added", "modified", "deleted")
# In a first version's metadata: what its starting files held where it changed them (`replaced`).
STARTING_FILES = "startingFiles"


def compute(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    """`{added, modified, deleted}`, each a sorted list of paths, from `before` to `after`."""
    return {
        "added": sorted(set(after) - set(before)),
        "modified": sorted(p for p in set(after) & set(before) if after[p] != before[p]),
        "deleted": sorted(set(before) - set(after)),
    }


def replaced(before: dict[str, str], changes: dict[str, list[str]]) -> dict[str, str]:
    """What `before` held at each path that was modified or deleted."""
    return {path: before[path] for path in (*changes["modified"], *changes["deleted"])}


def starting_point(
    files: dict[str, str], recorded: dict[str, list[str]], kept: dict[str, str] | None
) -> dict[str, str]:
    """A first version's starting files, rebuilt from its own, its recorded changes and what it
    kept of the paths it replaced: its `changes` are against them, and so is its diff.

    A version that kept none (made before they were kept) is compared with nothing, as then.
    """
    replaced_paths = [*recorded.get("modified", []), *recorded.get("deleted", [])]
    if any(path not in (kept or {}) for path in replaced_paths):
        return {}
    touched = {*recorded.get("added", []), *replaced_paths}
    unchanged = {path: text for path, text in files.items() if path not in touched}
    return {**unchanged, **{path: (kept or {})[path] for path in replaced_paths}}


def is_empty(changes: dict[str, list[str]]) -> bool:
    return not any(changes.get(kind) for kind in CHANGE_KINDS)


def file_diffs(before: dict[str, str], after: dict[str, str]) -> list[dict[str, Any]]:
    """One `{path, change, diff}` per changed path, sorted by path; `diff` is a unified diff."""
    changes = compute(before, after)
    out: list[dict[str, Any]] = []
    for kind in CHANGE_KINDS:
        for path in changes[kind]:
            old = before.get(path, "")
            new = after.get(path, "")
            diff = difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile="/dev/null" if kind == "added" else f"a/{path}",
                tofile="/dev/null" if kind == "deleted" else f"b/{path}",
            )
            out.append({"path": path, "change": kind, "diff": "".join(_terminated(diff))})
    return sorted(out, key=lambda item: item["path"])


def _terminated(lines: Any) -> Any:
    """A last line without a newline gets the marker `patch` expects, so the diff applies."""
    for line in lines:
        if line.endswith("\n"):
            yield line
        else:
            yield line + "\n\\ No newline at end of file\n"
