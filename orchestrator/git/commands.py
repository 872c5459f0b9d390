"""The one way `git` runs against a remote: nothing from the machine's or a repository's
configuration, no prompt, no hooks, one protocol, pinned to the checked address, and the token
in an environment variable of that one command (never an argument, a URL or a file).

    run(["fetch", "--depth", "1", remote.url, ref], cwd=scratch, remote=remote, token=token)
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.git.remotes import Remote

# `git` is asked to fail instead of asking anyone anything, and to run nothing it finds.
SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.symlinks=true",
    "http.followRedirects=false",
    "submodule.recurse=false",
    "protocol.file.allow=never",
    "protocol.ext.allow=never",
    "credential.helper=",
    "init.defaultBranch=main",
    "advice.detachedHead=false",
    "gc.auto=0",
)


class GitError(Exception):
    """A git command failed; `reason` is what git said, without the token."""

    def __init__(self, reason: str, *, timed_out: bool = False, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out
        self.too_large = too_large


@dataclass(frozen=True)
class Limits:
    """How long a command may take, and how large `watched` may grow while it runs."""

    timeout: float = 120.0
    max_bytes: int | None = None
    watched: Path | None = None


def environment(remote: Remote | None, token: str | None, home: Path) -> dict[str, str]:
    """A clean environment: no user or system configuration, the token as one config entry."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_ALLOW_PROTOCOL": remote.scheme if remote is not None else "file",
        "GIT_AUTHOR_NAME": "appforge",
        "GIT_AUTHOR_EMAIL": "appforge@localhost",
        "GIT_COMMITTER_NAME": "appforge",
        "GIT_COMMITTER_EMAIL": "appforge@localhost",
    }
    if token:
        # Through the environment (GIT_CONFIG_COUNT), so no process list ever shows it.
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env["GIT_CONFIG_COUNT"] = "1"
        env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
        env["GIT_CONFIG_VALUE_0"] = f"Authorization: Basic {basic}"
    return env


def scrub(text: str, token: str | None) -> str:
    """`text` without the token, in any form it could take."""
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        for secret in (basic, token):
            text = text.replace(secret, "***")
    return text


def run(
    args: Sequence[str],
    *,
    cwd: Path,
    home: Path,
    remote: Remote | None = None,
    token: str | None = None,
    limits: Limits = Limits(),
    stdin: bytes | None = None,
    alive: Callable[[], None] | None = None,
) -> str:
    """Run `git <args>` in `cwd`; its standard output, or GitError with git's reason."""
    command = ["git"]
    for entry in SAFE_CONFIG:
        command += ["-c", entry]
    if remote is not None:
        command += ["-c", f"http.curloptResolve={remote.pin}"]
    command += list(args)
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment(remote, token, home),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its helpers (git-remote-http) are stopped with it
    )
    try:
        out, err = _wait(process, stdin, limits, alive)
    finally:
        if process.poll() is None:
            _kill(process)
            process.wait()
    if process.returncode != 0:
        reason = scrub(err.decode(errors="replace"), token).strip()
        raise GitError(_last_lines(reason) or f"git {args[0]} failed")
    return out.decode(errors="replace")


def _wait(
    process: subprocess.Popen[bytes],
    stdin: bytes | None,
    limits: Limits,
    alive: Callable[[], None] | None,
) -> tuple[bytes, bytes]:
    deadline = time.monotonic() + limits.timeout
    if stdin is not None or limits.max_bytes is None:
        try:
            return process.communicate(stdin, timeout=limits.timeout)
        except subprocess.TimeoutExpired as exc:
            _kill(process)
            raise GitError(
                f"git took longer than {limits.timeout:g} seconds", timed_out=True
            ) from exc
    while True:
        try:
            return process.communicate(timeout=0.25)
        except subprocess.TimeoutExpired:
            pass
        if alive is not None:
            alive()
        if limits.watched is not None and _size(limits.watched) > limits.max_bytes:
            _kill(process)
            raise GitError(
                f"the repository is larger than {limits.max_bytes // (1024 * 1024)} MB",
                too_large=True,
            )
        if time.monotonic() > deadline:
            _kill(process)
            raise GitError(f"git took longer than {limits.timeout:g} seconds", timed_out=True)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _size(root: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue
    return total


def _last_lines(text: str, keep: int = 4) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-keep:])[:1000]
