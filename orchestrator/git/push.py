"""Pushing files as one commit on a branch of a remote, with `git fast-import` in a scratch
repository: on top of the branch's head when it has one, or (forced) as a history of its own."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InvalidRequest
from orchestrator.git import commands
from orchestrator.git.remotes import Remote

BRANCH_RULES = "branch must be a branch name (letters, digits, '.', '_', '-', '/')"


@dataclass(frozen=True)
class Pushed:
    commit: str
    parent: str | None


class PushRejected(Exception):
    """The remote refused the push; `reason` is git's, without the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_branch(branch: str) -> str:
    parts = branch.split("/")
    if (
        branch.startswith("-")
        or ".." in branch
        or branch.endswith((".lock", "/", "."))
        or any(not part or part.startswith(".") for part in parts)
        or any(not (c.isascii() and (c.isalnum() or c in "._-/")) for c in branch)
    ):
        raise InvalidRequest(BRANCH_RULES)
    return branch


def push(
    remote: Remote,
    branch: str,
    files: dict[str, str],
    message: str,
    into: Path,
    *,
    token: str | None,
    force: bool,
    timeout: float,
) -> Pushed:
    """`files` as one commit on `branch` of `remote`; PushRejected when the remote refuses."""
    check_branch(branch)
    home, repo = into / "home", into / "repo.git"
    home.mkdir()
    repo.mkdir()
    limits = commands.Limits(timeout=timeout)

    def git(*args: str, remote_side: bool = False, stdin: bytes | None = None) -> str:
        return commands.run(
            args,
            cwd=repo,
            home=home,
            remote=remote if remote_side else None,
            token=token if remote_side else None,
            limits=limits,
            stdin=stdin,
        )

    git("init", "--quiet", "--bare", "--template=")
    ref = f"refs/heads/{branch}"
    parent = None
    if not force:
        listed = git("ls-remote", "--end-of-options", remote.url, ref, remote_side=True)
        if listed.strip():
            git(
                "fetch", "--quiet", "--depth=1", "--no-tags", "--end-of-options",
                remote.url, f"+{ref}:{ref}", remote_side=True,
            )  # fmt: skip
            parent = git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    git("fast-import", "--quiet", "--done", stdin=_stream(ref, files, message, parent))
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    args = ["push", "--porcelain", "--no-verify"]
    if force:
        args.append("--force")
    try:
        git(*args, "--end-of-options", remote.url, f"{ref}:{ref}", remote_side=True)
    except commands.GitError as exc:
        if exc.timed_out:
            raise
        raise PushRejected(exc.reason) from exc
    return Pushed(commit, parent)


def _stream(ref: str, files: dict[str, str], message: str, parent: str | None) -> bytes:
    """A fast-import stream: one commit holding exactly `files`."""
    out = bytearray()
    text = message.encode()
    out += f"commit {ref}\n".encode()
    out += f"committer appforge <appforge@localhost> {int(time.time())} +0000\n".encode()
    out += f"data {len(text)}\n".encode() + text + b"\n"
    if parent:
        out += f"from {parent}\n".encode()
    out += b"deleteall\n"
    for path in sorted(files):
        data = files[path].encode()
        quoted = '"' + path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        out += f"M 100644 inline {quoted}\n".encode()
        out += f"data {len(data)}\n".encode() + data + b"\n"
    out += b"done\n"
    return bytes(out)
