"""Cloning a repository into a scratch folder: shallow, one ref, no hooks, no submodules, no
LFS smudge, within a time and a size limit. The caller reads the tree and removes the folder."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InvalidRequest
from orchestrator.git import commands
from orchestrator.git.remotes import Remote

# A branch, a tag or a commit: never an option, never a path out of refs/.
REF = re.compile(r"(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}")


@dataclass(frozen=True)
class Cloned:
    tree: Path
    commit: str


def check_ref(ref: str | None) -> str | None:
    if ref is not None and not REF.fullmatch(ref):
        raise InvalidRequest("ref must be a branch, a tag or a commit id")
    return ref


@contextmanager
def scratch(prefix: str = "appforge-git-") -> Iterator[Path]:
    """A private folder, removed afterwards whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def clone(
    remote: Remote,
    ref: str | None,
    into: Path,
    *,
    token: str | None,
    timeout: float,
    max_bytes: int,
    alive: Callable[[], None] | None = None,
) -> Cloned:
    """`ref` (default: the remote's HEAD) of `remote`, checked out in `into`/tree."""
    home, tree = into / "home", into / "tree"
    home.mkdir()
    tree.mkdir()
    limits = commands.Limits(timeout=timeout, max_bytes=max_bytes, watched=tree)

    def git(*args: str, limited: bool = False) -> str:
        return commands.run(
            args,
            cwd=tree,
            home=home,
            remote=remote if limited else None,
            token=token if limited else None,
            limits=limits if limited else commands.Limits(timeout=timeout),
            alive=alive,
        )

    git("init", "--quiet", "--template=")
    git(
        "fetch",
        "--quiet",
        "--depth=1",
        "--no-tags",
        "--no-recurse-submodules",
        "--end-of-options",
        remote.url,
        check_ref(ref) or "HEAD",
        limited=True,
    )
    commit = git("rev-parse", "--verify", "FETCH_HEAD^{commit}").strip()
    size = sum(
        int(fields[3])
        for line in git("ls-tree", "-r", "-l", "-z", commit).split("\0")
        if line and (fields := line.split(None, 4))[3] != "-"
    )
    if size > max_bytes:
        raise commands.GitError(
            f"the repository is larger than {max_bytes // (1024 * 1024)} MB", too_large=True
        )
    git("checkout", "--quiet", "--detach", commit)
    shutil.rmtree(tree / ".git", ignore_errors=True)
    return Cloned(tree, commit)
