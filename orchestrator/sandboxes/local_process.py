"""How a local command runs: its argv (bubblewrap or a plain shell), its limits, its capture."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.sandboxes.base import CommandResult, SandboxLimits
from orchestrator.sandboxes.local_users import kill_all_processes_of
from orchestrator.sandboxes.output import HeadTailBytes

BUBBLEWRAP = "bubblewrap"
SUBPROCESS = "subprocess"
SANDBOX_WORKSPACE = "/workspace"
TIMEOUT_EXIT_CODE = 124
KILLED_EXIT_CODE = -signal.SIGKILL

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_POLL_SECONDS = 0.05
# Once the command has exited and its leftovers are killed, how long to read what they wrote.
_DRAIN_SECONDS = 1.0
_REAP_SECONDS = 5.0
_EXITED, _TIMED_OUT, _STOPPED = "exited", "timed out", "stopped"
# The framework tools' own network habits, off: there is no network, and waiting on it is slow.
TOOL_ENV = {
    "NEXT_TELEMETRY_DISABLED": "1",
    "NG_CLI_ANALYTICS": "false",
    "npm_config_update_notifier": "false",
    "npm_config_audit": "false",
    "npm_config_fund": "false",
}


class IsolationUnavailable(RuntimeError):
    """Bubblewrap was asked for but cannot run here."""


@dataclass(frozen=True)
class Launcher:
    """Starts commands for one workspace: as `uid` (None: as ourselves), under `isolation`."""

    workspace: Path
    isolation: str
    limits: SandboxLimits
    uid: int | None = None
    # Host folders seen read-only inside the workspace: (host path, path in the workspace). With
    # bubblewrap a bind mount; without it, the factory links them into the workspace instead.
    read_only: tuple[tuple[Path, str], ...] = ()

    def start(self, command: str) -> RunningCommand:
        proc = subprocess.Popen(
            self.argv(command),
            cwd=self.workspace if self.isolation == SUBPROCESS else "/",
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_rlimit_setter(
                self.limits, self.uid, die_with_parent=self.isolation == SUBPROCESS
            ),
            user=self.uid,
            group=self.uid,
            extra_groups=None if self.uid is None else [],
        )
        in_namespace = self.isolation == BUBBLEWRAP
        return RunningCommand(proc, self.uid, self.limits.output_limit, in_namespace)

    def argv(self, command: str) -> list[str]:
        shell = ["bash", "-lc", command] if shutil.which("bash") else ["sh", "-c", command]
        if self.isolation == SUBPROCESS:
            return shell
        argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent"]
        argv += ["--new-session", "--as-pid-1", "--hostname", "sandbox"]
        for directory in _SYSTEM_DIRS:
            if os.path.islink(directory):
                argv += ["--symlink", os.readlink(directory), directory]
            elif os.path.isdir(directory):
                argv += ["--ro-bind", directory, directory]
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        argv += ["--bind", str(self.workspace), SANDBOX_WORKSPACE, "--chdir", SANDBOX_WORKSPACE]
        for source, inside in self.read_only:
            argv += ["--ro-bind", str(source), f"{SANDBOX_WORKSPACE}/{inside}"]
        argv += ["--remount-ro", "/"]  # bwrap's own root is a tmpfs: keep it from being written
        argv.append("--clearenv")
        for name, value in self.environment().items():
            argv += ["--setenv", name, value]
        return [*argv, "--", *shell]

    def environment(self) -> dict[str, str]:
        home = SANDBOX_WORKSPACE if self.isolation == BUBBLEWRAP else str(self.workspace)
        return {"PATH": _PATH, "HOME": home, "LANG": "C.UTF-8", "TERM": "dumb", **TOOL_ENV}


def probe_bubblewrap(launcher: Launcher) -> str | None:
    """Why bubblewrap cannot run commands here, or None when a trial command works."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed"
    try:
        result = launcher.start("true").result(timeout=10, stopped=lambda: False)
    except OSError as exc:
        return f"bwrap failed to start: {exc}"
    if result.exit_code != 0:
        return f"bwrap exited with {result.exit_code}: {result.stderr.strip()[:300]}"
    return None


_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


def hide_from_same_user() -> None:
    """Make this process unreadable to other processes of its own uid (PR_SET_DUMPABLE 0).

    Commands that run as our own uid (no bubblewrap, not root) could otherwise read
    /proc/<our pid>/environ and /proc/<our pid>/mem, that is the worker's secrets. Children
    inherit the flag across fork (a prefork pool's processes) and lose it at exec (the
    commands). It also turns off core dumps and same-user ptrace (debuggers) of this process.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(errno)}")


class RunningCommand:
    """One started command: read its output until it ends, or kill it from any thread."""

    def __init__(
        self, proc: subprocess.Popen[bytes], uid: int | None, output_limit: int, in_namespace: bool
    ) -> None:
        self._proc = proc
        self._uid = uid
        self._in_namespace = in_namespace
        self._lock = threading.Lock()
        self._stdout = HeadTailBytes(output_limit)
        self._stderr = HeadTailBytes(output_limit)

    def kill(self) -> None:
        """SIGKILL all the command started: its tree, and as root every process of its uid."""
        self._kill_tree()
        if self._uid is not None:
            kill_all_processes_of(self._uid)

    def result(self, timeout: float, stopped: Callable[[], bool]) -> CommandResult:
        ending = self._pump(time.monotonic() + timeout, stopped)
        if ending == _TIMED_OUT:
            self.kill()
        elif ending == _STOPPED:
            self._kill_tree()  # the stopper kills the rest; the uid may be released already
        exit_code = self._reap()
        stderr = self._stderr.text()
        if ending == _TIMED_OUT:
            exit_code = TIMEOUT_EXIT_CODE
            stderr += f"\n[timed out after {timeout:g} s]"
        elif ending == _STOPPED:
            exit_code = KILLED_EXIT_CODE
            stderr += "\n[killed: the sandbox was stopped]"
        return CommandResult(
            exit_code=exit_code,
            stdout=self._stdout.text(),
            stderr=stderr,
            truncated=self._stdout.truncated or self._stderr.truncated,
            timed_out=ending == _TIMED_OUT,
        )

    def _pump(self, deadline: float, stopped: Callable[[], bool]) -> str:
        """Read both pipes until the command ends, times out or is stopped; say which."""
        assert self._proc.stdout is not None and self._proc.stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ, self._stdout)
            selector.register(self._proc.stderr, selectors.EVENT_READ, self._stderr)
            drain_until: float | None = None
            while True:
                now = time.monotonic()
                if stopped():
                    return _STOPPED
                if drain_until is None:
                    if self._exited():
                        # Nothing the command started outlives it; that also closes its pipes.
                        self.kill()
                        drain_until = now + _DRAIN_SECONDS
                    elif now >= deadline:
                        return _TIMED_OUT
                elif not selector.get_map() or now >= drain_until:
                    return _EXITED
                wait = _POLL_SECONDS if drain_until else min(_POLL_SECONDS, deadline - now)
                if not selector.get_map():
                    time.sleep(wait)
                for key, _ in selector.select(wait) if selector.get_map() else []:
                    chunk = os.read(key.fd, 1 << 16)
                    if chunk:
                        key.data.feed(chunk)
                    else:
                        selector.unregister(key.fileobj)

    def _exited(self) -> bool:
        """Whether the command has ended, without reaping it (so its pid cannot be reused yet)."""
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        try:
            return os.waitid(os.P_PID, self._proc.pid, flags) is not None
        except ChildProcessError:
            return True

    def _kill_tree(self) -> None:
        with self._lock:
            if self._proc.returncode is not None:
                return
            if self._in_namespace:
                # Kill bwrap's child first: its namespace dies with it and bwrap reaps it, where
                # killing bwrap first would leave it a zombie for the system's init to reap.
                for child in _children_of(self._proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                give_up = time.monotonic() + 0.5
                while not self._exited() and time.monotonic() < give_up:
                    time.sleep(0.005)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def _reap(self) -> int:
        give_up = time.monotonic() + _REAP_SECONDS
        while not self._exited() and time.monotonic() < give_up:
            time.sleep(0.01)
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()
        with self._lock:
            try:
                code = self._proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:  # stuck in the kernel; Popen reaps it later
                return KILLED_EXIT_CODE
        return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it


def _rlimit_setter(
    limits: SandboxLimits, uid: int | None, *, die_with_parent: bool
) -> Callable[[], None]:
    """The preexec_fn: plain setrlimit calls on values computed here, before the fork.

    `die_with_parent` is bubblewrap's --die-with-parent for a plain subprocess: SIGKILL when the
    thread that started it (the one waiting for it) dies, so a worker that exits or is killed
    outright takes its running command along. It applies after the uid change, which clears it.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl if die_with_parent else None
    nproc = limits.max_processes
    if uid is None:
        # Not root: RLIMIT_NPROC counts every process of our own user, so leave room for them.
        nproc += _tasks_of(os.getuid())
    wanted = [
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        # Writable memory, not address space: node reserves ~10 GB of address space per
        # WebAssembly instance (guard regions), so any RLIMIT_AS a build fits in limits nothing.
        (resource.RLIMIT_DATA, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.max_file_bytes),
        (resource.RLIMIT_NPROC, nproc),
        (resource.RLIMIT_CORE, 0),
    ]
    values = [(which, _at_most_hard_limit(which, value)) for which, value in wanted]
    parent = os.getpid()

    def apply() -> None:
        for which, value in values:
            resource.setrlimit(which, (value, value))
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            # A parent that died between the fork and the prctl sends no signal: go now.
            if os.getppid() != parent:
                os._exit(1)

    return apply


def _at_most_hard_limit(which: int, value: int) -> int:
    hard = resource.getrlimit(which)[1]
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def _tasks_of(uid: int) -> int:
    """How many tasks (threads included, as RLIMIT_NPROC counts them) `uid` runs now."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
                if int(fields[1]) == pid:  # "pid (comm) state ppid ..."
                    children.append(int(entry.name))
    return children
