"""`orchestrator sandbox prepare`: install a framework's starter and its dependencies, once.

The starter is copied into a new folder beside the prepared one, `npm ci` installs exactly its
lock file there (from the registry, with no install scripts), a stamp records the lock's hash, and
the folder replaces the old one by renames, so a worker never sees a half-installed template.
Run again with the same lock, it does nothing: the stamp matches. A worker prepares what is
missing when it starts (`prepare_missing`), or refuses to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.sandboxes.templates import SPECS, STAMP, TemplateStore, lock_hash, spec_for

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


def missing(store: TemplateStore) -> list[str]:
    """The frameworks (folder names, in the order of SPECS) whose template is not prepared."""
    return [spec.folder for name, spec in SPECS.items() if store.prepared(name) is None]


def prepare_missing(store: TemplateStore, say: Callable[[str], None]) -> list[Prepared]:
    """Prepare every framework template that is not prepared, saying how it goes.

    ConfigError, saying what to run instead, when one cannot be (no npm, npm ci failed): a
    worker that started anyway would fail every run of that framework.
    """
    left = missing(store)
    if not left:
        return []
    if shutil.which("npm") is None:
        raise ConfigError(not_ready(store, left, "npm is not installed"))
    say(
        f"framework templates not prepared: {', '.join(left)}; preparing them in {store.root} "
        "(npm ci, once per machine)"
    )
    done = []
    for number, framework in enumerate(left, 1):
        say(f"{framework} template: installing ({number} of {len(left)}) ...")
        try:
            done.append(prepare(store, framework))
        except (ConfigError, OSError) as exc:
            reason = exc.message if isinstance(exc, ConfigError) else str(exc)
            raise ConfigError(
                not_ready(store, left[number - 1 :], f"preparing {framework} failed: {reason}")
            ) from exc
        what = "installed" if done[-1].installed else "prepared meanwhile by another process"
        say(f"{framework} template: {what} ({done[-1].seconds:.1f} s)")
    return done


def not_ready(store: TemplateStore, left: list[str], reason: str) -> str:
    """Why a worker does not start without its templates, and the two ways out."""
    return (
        f"the framework templates {', '.join(left)} are not prepared in {store.root} ({reason}), "
        "so every run for them would fail: this worker does not start. Run `orchestrator "
        "sandbox prepare` with the worker's environment (it needs Node.js 18 or later with npm "
        "and the npm registry; Debian/Ubuntu: apt-get install nodejs npm), as the Procfile's "
        "release line does, then start the worker again; or set SANDBOX_TEMPLATES=off to build "
        "static apps only"
    )


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
