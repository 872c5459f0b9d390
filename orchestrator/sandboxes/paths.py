"""The path guard: every path the model names is relative to the workspace and stays inside it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from orchestrator.sandboxes.base import SandboxPathError


def safe_relative_path(path: str) -> str:
    """Normalise a model-given path to a clean relative POSIX path, or refuse it."""
    if not isinstance(path, str) or not path.strip():
        raise SandboxPathError("path must be a non-empty string")
    if "\x00" in path:
        raise SandboxPathError("path must not contain NUL bytes")
    raw = path.strip().replace("\\", "/")
    pure = PurePosixPath(raw)
    if pure.is_absolute() or raw.startswith("~"):
        raise SandboxPathError(f"absolute paths are not allowed: {path}")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise SandboxPathError(f"path escapes the workspace: {path}")
    return "/".join(parts) or "."


def resolve_inside(root: Path, path: str) -> Path:
    """The real location of `path` under `root`, refusing anything a symlink takes outside."""
    relative = safe_relative_path(path)
    root = root.resolve()
    target = (root / relative).resolve()
    if target != root and not target.is_relative_to(root):
        raise SandboxPathError(f"path escapes the workspace: {path}")
    return target
