"""A run's base: its project's latest version when a worker claims it, and what the model sees."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from orchestrator.versions import numbering


@dataclass(frozen=True)
class BaseVersion:
    fragment_id: str
    version: int
    files: dict[str, str]
    sandbox_id: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"fragmentId": self.fragment_id, "version": self.version, "files": len(self.files)}


def load_base(session: Session, project_id: str) -> BaseVersion | None:
    latest = numbering.latest(session, project_id)
    if latest is None:
        return None
    return BaseVersion(latest.id, latest.version, dict(latest.files or {}), latest.sandbox_id)


TREE_HEADING = "The workspace already holds the app as version"
_TREE_LINE = re.compile(r"^- (.+) \((\d+)\)$")


def file_tree(base: BaseVersion) -> str:
    """Every path of the base with its size: the model knows what exists without the contents."""
    lines = [
        f"{TREE_HEADING} {base.version} left it "
        f"({len(base.files)} files). Change it in place: read_file a file before changing it, "
        "edit_file for small changes, write_file only for new files or complete rewrites; keep "
        "what the user did not ask to change. Files (bytes):"
    ]
    lines += [f"- {path} ({len(text.encode())})" for path, text in sorted(base.files.items())]
    return "\n".join(lines)


def with_file_tree(
    messages: list[dict[str, Any]], base: BaseVersion | None
) -> list[dict[str, Any]]:
    """The first request's messages, with the base's file tree added to the system prompt."""
    if base is None or not messages or messages[0].get("role") != "system":
        return messages
    system = {**messages[0], "content": f"{messages[0]['content']}\n\n{file_tree(base)}"}
    return [system, *messages[1:]]


def paths_in_tree(system_prompt: str) -> dict[str, int]:
    """The paths and sizes a file tree names (what the offline demo reads), else nothing."""
    if TREE_HEADING not in system_prompt:
        return {}
    tree = system_prompt.split(TREE_HEADING, 1)[1]
    found = (_TREE_LINE.match(line) for line in tree.splitlines())
    return {match[1]: int(match[2]) for match in found if match}
