"""`orchestrator sandbox prepare`: install a framework's starter and its dependencies, once.

The starter is copied into a new folder beside the prepared one, `npm ci` installs exactly its
lock file there (from the registry, with no install scripts), a stamp records the lock's hash, and
the folder replaces the old one by renames, so a worker never sees a half-installed template.
Run again with the same lock, it does nothing: the stamp matches.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.sandboxes.templates import STAMP, TemplateStore, lock_hash, spec_for

NPM_CI = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]


@dataclass(frozen=True)
class Prepared:
    framework: str
    path: Path
    installed: bool  # False: it was prepared already
    seconds: float


def prepare(store: TemplateStore, framework: str, npm_timeout: float = 900) -> Prepared:
    spec = spec_for(framework)
    started = time.monotonic()
    store.root.mkdir(parents=True, exist_ok=True)
    store.root.chmod(0o755)  # sandbox users read node_modules through it
    with _lock(store.root / f".{spec.folder}.lock"):
        found = store.prepared(spec.framework)
        if found is not None:
            return Prepared(spec.framework, found.path, False, time.monotonic() - started)
        if shutil.which("npm") is None:
            raise ConfigError(
                "npm is not installed: install Node.js 18 or later with npm "
                "(Debian/Ubuntu: apt-get install nodejs npm), then prepare again"
            )
        source = store.starters / spec.folder / "app"
        target = store.root / spec.folder
        fresh = store.root / f".{spec.folder}.new"
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.copytree(source, fresh, ignore=shutil.ignore_patterns("node_modules"))
        _npm_ci(fresh, npm_timeout)
        (fresh / STAMP).write_text(lock_hash(source) + "\n")
        _make_readable(fresh)
        old = store.root / f".{spec.folder}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)  # runs holding the old tree keep their open mounts
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    return Prepared(spec.framework, target, True, time.monotonic() - started)


def _npm_ci(folder: Path, timeout: float) -> None:
    env = {**os.environ, "npm_config_update_notifier": "false"}
    try:
        done = subprocess.run(
            NPM_CI, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"npm ci in {folder} took more than {timeout:g} s") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-2000:]
        raise ConfigError(f"npm ci failed in {folder} (exit {done.returncode}):\n{output}")


def _make_readable(folder: Path) -> None:
    """Sandbox commands run as other uids: every file readable, every folder enterable."""
    for directory, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            path = Path(directory, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o555)
        for name in filenames:
            path = Path(directory, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o444)
    folder.chmod(0o755)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """One prepare per framework at a time (two test sessions, two shells)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
