"""The local sandbox: a workspace directory per run, commands under bubblewrap when it works.

Files are written and read by this process through the path guard; commands run with resource
limits and a scrubbed environment, as a uid of their own when we are root, and (with bubblewrap)
without network, with a read-only system and only the workspace writable. Whether commands may
run without bubblewrap is the caller's choice (`isolation`; SANDBOX_ISOLATION in services.py);
when they share our uid, this process hides its /proc from them. See `local_process`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import shutil
import stat
import threading
import time
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.sandboxes import builds
from orchestrator.sandboxes.base import (
    DEFAULT_COMMAND_TIMEOUT,
    MAX_COMMAND_TIMEOUT,
    CommandResult,
    SandboxFileNotFound,
    SandboxLimits,
    SandboxPathError,
)
from orchestrator.sandboxes.local_process import (
    BUBBLEWRAP,
    SUBPROCESS,
    IsolationUnavailable,
    Launcher,
    RunningCommand,
    hide_from_same_user,
    probe_bubblewrap,
)
from orchestrator.sandboxes.local_users import UidLease, kill_all_processes_of, kill_orphans
from orchestrator.sandboxes.paths import resolve_inside
from orchestrator.sandboxes.places import refusal, unreachable_through
from orchestrator.sandboxes.snapshot import Snapshot, read_tree
from orchestrator.sandboxes.templates import NODE_MODULES, PreparedTemplate, TemplateStore

log = logging.getLogger(__name__)

MAX_WRITE_BYTES = 2 * 1024 * 1024
MAX_READ_BYTES = 2 * 1024 * 1024
MAX_LIST_ENTRIES = 1000
MIN_COMMAND_TIMEOUT = 1.0
SKIPPED_DIRS = frozenset({"node_modules", ".git"})
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ISOLATIONS = {"auto", "bwrap", "none"}


class SandboxClosed(RuntimeError):
    """The sandbox was killed or closed and takes no more calls."""


class LocalSandboxFactory:
    """Makes one workspace per run under `root`; `isolation` is "auto", "bwrap" or "none".

    With `templates`, a workspace starts with its framework's prepared starter and its commands
    see the starter's node_modules read-only (the model builds the app; the web app serves the
    build output). Without, the web app serves the workspace's files as they are.
    """

    def __init__(
        self,
        root: Path,
        limits: SandboxLimits | None = None,
        isolation: str = "auto",
        templates: TemplateStore | None = None,
    ) -> None:
        if isolation not in _ISOLATIONS:
            raise ValueError(f"isolation must be one of {sorted(_ISOLATIONS)}, not {isolation!r}")
        self.templates = templates
        self.serves = "static" if templates is None else "build"
        self.limits = limits or SandboxLimits()
        self.drops_privileges = os.geteuid() == 0
        self.root = _prepare_root(Path(root), self.drops_privileges)
        self.isolation = SUBPROCESS if isolation == "none" else self._try_bubblewrap(isolation)
        if self.isolation == SUBPROCESS and not self.drops_privileges:
            # Commands share our uid: at least keep them out of our /proc (environment, memory).
            hide_from_same_user()

    def check_ready(self, framework: str) -> None:
        """Raise TemplateNotPrepared (saying what to run) when `framework` cannot be built."""
        if self.templates is not None:
            self.templates.require(framework)

    def create(self, run_id: str, framework: str) -> LocalSandbox:
        if not _RUN_ID.fullmatch(run_id):
            raise ValueError(f"run id cannot name a workspace: {run_id!r}")
        template = self.templates.require(framework) if self.templates is not None else None
        lease = UidLease.acquire(self._lock_dir) if self.drops_privileges else None
        try:
            # A directory of its own per sandbox, not per run: an earlier attempt of this run
            # that is still stopping (it lost its lease) must not delete the next one's files.
            workspace = self.root / f"{run_id}.{secrets.token_hex(4)}"
            workspace.mkdir(mode=0o700)
            if lease is not None:
                os.chown(workspace, lease.uid, lease.uid)
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        uid = None if lease is None else lease.uid
        read_only: tuple[tuple[Path, str], ...] = ()
        if template is not None and self.isolation == BUBBLEWRAP:
            read_only = ((template.node_modules, NODE_MODULES),)
        launcher = Launcher(workspace, self.isolation, self.limits, uid, read_only)
        metadata: dict[str, object] = {
            "sandbox": "local",
            "isolation": self.isolation,
            "framework": framework,
        }
        sandbox = LocalSandbox(f"local-{run_id}", launcher, lease, metadata, template)
        if template is not None:
            try:
                sandbox.install_template()
            except BaseException:
                sandbox.kill()
                raise
        return sandbox

    def discard(self, run_id: str) -> None:
        """Clear what a run's dead worker left behind: its workspace, and any sandbox process
        whose worker is gone (the reaper calls this before a run is re-sent or given up)."""
        for workspace in self.root.iterdir():
            if workspace.name.rsplit(".", 1)[0] == run_id:
                shutil.rmtree(workspace, ignore_errors=True)
        if self.drops_privileges:
            kill_orphans(self._lock_dir)

    @property
    def _lock_dir(self) -> Path:
        return self.root / ".uids"

    def _try_bubblewrap(self, requested: str) -> str:
        lease = UidLease.acquire(self._lock_dir) if self.drops_privileges else None
        try:
            uid = None if lease is None else lease.uid
            if lease is not None:
                lease.mark_used()
            problem = probe_bubblewrap(Launcher(self.root, BUBBLEWRAP, self.limits, uid))
        finally:
            if lease is not None:
                lease.release()
        if problem is None:
            return BUBBLEWRAP
        if requested == "bwrap":
            raise IsolationUnavailable(problem)
        log.warning("bubblewrap unavailable (%s): commands run as plain subprocesses", problem)
        return SUBPROCESS


class LocalSandbox:
    """One run's workspace directory; its commands run one at a time."""

    kind = "local"

    def __init__(
        self,
        id: str,
        launcher: Launcher,
        lease: UidLease | None,
        metadata: dict[str, object],
        template: PreparedTemplate | None = None,
    ) -> None:
        self.id = id
        self.metadata = metadata
        self.template = template
        # A workspace made from a template starts with its files (DESIGN section 12).
        self.starts_from_template = template is not None
        self._template_paths: frozenset[str] = frozenset()
        # The last build the model ran: {"status": "passed" | "failed", "command", "exitCode"}.
        self.build: dict[str, object] | None = None
        # Its result, and the digest of the sources it built (builds.digest), if they could be
        # read back.
        self._build_result: CommandResult | None = None
        self._built_sources: str | None = None
        # How long it took (the build check reports it: DESIGN section 16).
        self.build_duration_ms = 0
        self.workspace = launcher.workspace
        # The uid commands run as, or None when they run as this process's user.
        self.uid = launcher.uid
        self._launcher = launcher
        self._lease = lease
        self._lock = threading.Lock()
        self._running: RunningCommand | None = None
        self._closed = False

    def write(self, path: str, content: str) -> None:
        self._ensure_open()
        data = content.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise ValueError(f"content is {len(data)} bytes; files are limited to 2 MiB")
        target = resolve_inside(self.workspace, path)
        self._make_parents(target.parent, path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = self._open(target, flags, path)
        try:
            os.ftruncate(fd, 0)
            if self.uid is not None:
                os.fchown(fd, self.uid, self.uid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def read(self, path: str) -> str:
        self._ensure_open()
        target = resolve_inside(self.workspace, path)
        fd = self._open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, path)
        with os.fdopen(fd, "rb") as file:
            data = file.read(MAX_READ_BYTES + 1)
        text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
        if len(data) > MAX_READ_BYTES:
            text += f"\n[file truncated: only the first {MAX_READ_BYTES} bytes are shown]"
        return text

    def list(self, path: str = ".") -> list[str]:
        self._ensure_open()
        base = resolve_inside(self.workspace, path)
        if not base.exists():
            raise SandboxFileNotFound(f"no such file or directory: {path}")
        if not base.is_dir():
            return [base.relative_to(self.workspace).as_posix()]
        found: list[str] = []
        for directory, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(name for name in dirnames if name not in SKIPPED_DIRS)
            for name in sorted(filenames):
                file = Path(directory, name)
                if not self._is_listable(file):
                    continue
                found.append(file.relative_to(self.workspace).as_posix())
                if len(found) >= MAX_LIST_ENTRIES:
                    return sorted(found)
        return sorted(found)

    def run(self, command: str, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
        if math.isnan(timeout):
            timeout = DEFAULT_COMMAND_TIMEOUT
        timeout = min(max(timeout, MIN_COMMAND_TIMEOUT), MAX_COMMAND_TIMEOUT)
        with self._lock:
            self._ensure_open()
            if self._running is not None:
                raise RuntimeError("another command is still running in this sandbox")
            if self._lease is not None:
                self._lease.mark_used()
            running = self._running = self._launcher.start(command)
        began = time.monotonic()
        try:
            result = running.result(timeout, stopped=lambda: self._closed)
        finally:
            with self._lock:
                self._running = None
        if self.template is not None and builds.names_build(self.template.spec, command):
            self.build = builds.outcome(command, result)
            self._build_result = result
            self.build_duration_ms = int((time.monotonic() - began) * 1000)
            try:
                self._built_sources = builds.digest(self.snapshot().files)
            except Exception:  # unreadable now: the runner builds again rather than trust it
                self._built_sources = None
        return result

    # -- templates -------------------------------------------------------------------------
    def install_template(self) -> None:
        """The starter's sources into the new workspace, and its node_modules made visible."""
        assert self.template is not None
        files = self.template.source_files()
        for path, content in files.items():
            self.write(path, content)
        self._template_paths = frozenset(files)
        mount_point = self.workspace / NODE_MODULES
        if self._launcher.read_only:
            mount_point.mkdir()  # bubblewrap binds the prepared folder over it
            if self.uid is not None:
                os.chown(mount_point, self.uid, self.uid)
        else:  # plain subprocesses: a link (the snapshot never follows it)
            mount_point.symlink_to(self.template.node_modules, target_is_directory=True)

    @property
    def build_command(self) -> str | None:
        return self.template.spec.build_command if self.template is not None else None

    @property
    def build_result(self) -> CommandResult | None:
        """The last build's command result (its output names what failed)."""
        return self._build_result

    def built(self, sources: dict[str, str]) -> bool:
        """Whether the last build (passed or failed) was of exactly these sources."""
        return self._built_sources is not None and self._built_sources == builds.digest(sources)

    def build_output(self) -> Snapshot | None:
        """What the version's preview serves: the last build's output folder (text files), a
        page with its error if it failed, or None when nothing was built."""
        self._ensure_open()
        if self.template is None:
            return None
        if self.build is not None and self.build["status"] == builds.FAILED:
            assert self._build_result is not None
            return builds.failure_page(str(self.build["command"]), self._build_result)
        return builds.read_output(self.workspace, self.template.spec)

    # -- versions (DESIGN section 12) ------------------------------------------------------
    def seed(self, files: dict[str, str]) -> None:
        # A base replaces the template: a template file the app deleted stays deleted.
        for path in self._template_paths - set(files):
            with contextlib.suppress(OSError):
                resolve_inside(self.workspace, path).unlink()
        for path, content in files.items():
            self.write(path, content)

    def snapshot(self) -> Snapshot:
        self._ensure_open()
        snapshot = read_tree(self.workspace)
        if self.template is not None:
            builds.leave_out_output(snapshot, self.template.spec)
        return snapshot

    def preview(self) -> str | None:
        return None  # the web app serves a local preview from the fragment's files

    def close(self, keep_alive: bool = False) -> None:
        # Nothing local stays up for a preview, so keep_alive changes nothing.
        self.kill()

    def kill(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = self._running
        if running is not None:
            running.kill()
        elif self.uid is not None and (self._lease is None or self._lease.used):
            kill_all_processes_of(self.uid)  # what a finished command may have left running
        shutil.rmtree(self.workspace, ignore_errors=True)
        if self._lease is not None:
            self._lease.release(clean=True)

    def _ensure_open(self) -> None:
        if self._closed:
            raise SandboxClosed(f"sandbox {self.id} is closed")

    def _make_parents(self, directory: Path, path: str) -> None:
        missing = [d for d in (directory, *directory.parents) if not d.exists()]
        for parent in reversed(missing):
            try:
                parent.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise SandboxPathError(f"cannot create the folders for {path}: {exc}") from exc
            if self.uid is not None:
                os.chown(parent, self.uid, self.uid)
        if not directory.is_dir():
            raise SandboxPathError(f"cannot write {path}: a parent is not a folder")

    def _open(self, target: Path, flags: int, path: str) -> int:
        try:
            fd = os.open(target, flags, 0o644)
        except FileNotFoundError as exc:
            raise SandboxFileNotFound(f"no such file: {path}") from exc
        except IsADirectoryError as exc:
            raise IsADirectoryError(f"{path} is a folder, not a file") from exc
        except OSError as exc:  # ELOOP: the last component became a symlink after resolving
            raise SandboxPathError(f"cannot open {path}: {exc.strerror}") from exc
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            return fd
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{path} is a folder, not a file")
        raise SandboxPathError(f"{path} is not a regular file")

    def _is_listable(self, file: Path) -> bool:
        """A regular file, or a symlink to one inside the workspace."""
        with contextlib.suppress(OSError):
            real = file.resolve(strict=True)
            return real.is_relative_to(self.workspace) and real.is_file()
        return False


def _prepare_root(root: Path, for_other_users: bool) -> Path:
    """Create the root; when commands run as other uids, they must be able to reach through it.

    The worker's wiring moves a default root that they cannot reach (places.py); a root named
    here as it is must be reachable already.
    """
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    if for_other_users:
        root.chmod(0o711)  # enter, but not list other runs' workspaces
        blocker = unreachable_through(root)
        if blocker is not None:
            raise ConfigError(refusal("SANDBOX_ROOT", root, blocker))
    return root
