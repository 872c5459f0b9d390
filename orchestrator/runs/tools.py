"""The tools offered to the model (DESIGN section 7): exact names, arguments and result shapes.

A tool never raises to the loop: bad arguments, refused paths and sandbox failures come back as
`{"error": "<why>"}`, which the model sees and can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from orchestrator.runs.pages import (
    MAX_LIST_ENTRIES,
    READ_FILE_PROPERTIES,
    PageError,
    capped_listing,
    read_page,
)
from orchestrator.sandboxes.base import (
    DEFAULT_COMMAND_TIMEOUT,
    MAX_COMMAND_TIMEOUT,
    Sandbox,
    SandboxFileNotFound,
    SandboxPathError,
)
from orchestrator.sandboxes.paths import safe_relative_path

MAX_FILE_CHARS = 1_000_000


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Any:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


TOOL_SPECS: list[dict[str, Any]] = [
    _function(
        "write_file",
        "Create or overwrite a file in the project workspace.",
        {
            "path": {"type": "string", "description": "Path relative to the workspace root."},
            "content": {"type": "string", "description": "The complete file content."},
        },
        ["path", "content"],
    ),
    _function(
        "edit_file",
        "Change part of an existing file: replace the one exact occurrence of `old` with `new`. "
        "Prefer it to write_file for small changes; `old` must appear exactly once.",
        {
            "path": {"type": "string", "description": "Path relative to the workspace root."},
            "old": {"type": "string", "description": "The exact text to replace, unique."},
            "new": {"type": "string", "description": "The text to put in its place."},
        },
        ["path", "old", "new"],
    ),
    _function(
        "read_file",
        "Read a file from the project workspace, a page of lines at a time: returns content, "
        "totalLines and truncated; when truncated, read on from nextOffset.",
        READ_FILE_PROPERTIES,
        ["path"],
    ),
    _function(
        "list_files",
        "List the files under a directory of the workspace (default: the root), at most "
        f"{MAX_LIST_ENTRIES} paths.",
        {"path": {"type": "string", "description": "Directory relative to the workspace root."}},
        [],
    ),
    _function(
        "run_command",
        "Run a shell command in the workspace; returns exitCode, stdout, stderr, truncated "
        "(long output keeps its start and its end).",
        {
            "command": {"type": "string"},
            "timeout": {"type": "number", "description": "Seconds before the command is killed."},
        },
        ["command"],
    ),
    _function(
        "finish",
        "Call once the app is complete, with a short title and a summary for the user.",
        {"title": {"type": "string"}, "summary": {"type": "string"}},
        ["title", "summary"],
    ),
]
TOOL_NAMES = frozenset(spec["function"]["name"] for spec in TOOL_SPECS)


class ToolError(Exception):
    """A tool call the model got wrong; its message goes back to the model."""


@dataclass
class Workspace:
    """The agent's view of the sandbox: what it wrote, in order, with final contents."""

    sandbox: Sandbox
    written: dict[str, str] = field(default_factory=dict)

    def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._dispatch(name, args)
        except ToolError as exc:
            return {"error": str(exc)}
        except SandboxPathError as exc:
            return {"error": str(exc)}
        except SandboxFileNotFound as exc:
            return {"error": f"file not found: {exc}"}
        except Exception as exc:  # the model gets to see and react to any sandbox failure
            return {"error": f"{type(exc).__name__}: {exc}"[:500]}

    def _dispatch(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "write_file":
            path = safe_relative_path(_string(args, "path"))
            content = _string(args, "content", allow_empty=True)
            if len(content) > MAX_FILE_CHARS:
                raise ToolError(f"content is larger than {MAX_FILE_CHARS} characters")
            self.sandbox.write(path, content)
            self.written[path] = content
            return {"success": True, "path": path, "bytes": len(content.encode())}
        if name == "edit_file":
            return self._edit(args)
        if name == "read_file":
            path = safe_relative_path(_string(args, "path"))
            content = self.sandbox.read(path)
            try:  # a page at a time (pages.py): one read must fit the model's context
                return read_page(path, content, args.get("offset"), args.get("limit"))
            except PageError as exc:
                raise ToolError(str(exc)) from exc
        if name == "list_files":
            raw = args.get("path") or "."
            if not isinstance(raw, str):
                raise ToolError("path must be a string")
            return capped_listing(self.sandbox.list(safe_relative_path(raw)))
        if name == "run_command":
            command = _string(args, "command")
            timeout = args.get("timeout", DEFAULT_COMMAND_TIMEOUT)
            if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
                raise ToolError("timeout must be a positive number of seconds")
            result = self.sandbox.run(command, timeout=min(float(timeout), MAX_COMMAND_TIMEOUT))
            return result.as_tool_result()
        raise ToolError(f"unknown tool: {name}")

    def _edit(self, args: dict[str, Any]) -> dict[str, Any]:
        path = safe_relative_path(_string(args, "path"))
        old = _string(args, "old", allow_empty=True)
        new = _string(args, "new", allow_empty=True)
        content = edited(self.sandbox.read(path), old, new, path)
        if len(content) > MAX_FILE_CHARS:
            raise ToolError(f"the edited file would be larger than {MAX_FILE_CHARS} characters")
        self.sandbox.write(path, content)
        self.written[path] = content
        return {"success": True, "path": path, "bytes": len(content.encode())}


def edited(content: str, old: str, new: str, path: str) -> str:
    """`content` with the one occurrence of `old` replaced by `new`, or a ToolError saying why."""
    if not old:
        raise ToolError("'old' must be the exact, non-empty text to replace")
    count = content.count(old)
    if count == 0:
        raise ToolError(f"'old' does not appear in {path}; read_file it and copy the text exactly")
    if count > 1:
        raise ToolError(
            f"'old' appears {count} times in {path}; include more surrounding text so it is unique"
        )
    return content.replace(old, new, 1)


def parse_arguments(raw: str) -> dict[str, Any]:
    """Tool arguments as the model sent them: one JSON object, or a ToolError."""
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise ToolError(f"arguments are not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise ToolError("arguments must be a JSON object")
    return value


def _string(args: dict[str, Any], key: str, *, allow_empty: bool = False) -> str:
    value = args.get(key)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ToolError(f"'{key}' must be a non-empty string")
    return value
