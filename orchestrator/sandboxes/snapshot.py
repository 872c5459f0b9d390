"""Reading a workspace back into a version's files (DESIGN section 12), and the rules for it.

Reading back is a security boundary: only regular files, never through a symlink (a link to
/etc/passwd or to a folder outside brings nothing in), never into dependency or build folders,
text only, and capped per file and per version. What is left out and why goes to `skipped`,
which the run records as `metadata.skipped`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

# Dependency and build folders, and caches: rebuilt from the sources, never part of a version.
SKIPPED_DIRS = frozenset(
    {
        "node_modules",
        ".git",
        ".next",
        "dist",
        "build",
        ".cache",
        ".turbo",
        ".vite",
        ".svelte-kit",
        ".angular",
        ".parcel-cache",
        ".npm",
        ".pnpm-store",
        ".yarn",
        "__pycache__",
        ".pytest_cache",
        ".venv",
        "coverage",
    }
)
MAX_FILE_BYTES = 2 * 1024 * 1024  # as write_file's limit
MAX_VERSION_BYTES = 16 * 1024 * 1024
MAX_VERSION_FILES = 2000


@dataclass
class Snapshot:
    """A workspace's files as text, and what was left out: `[{path, reason}]`."""

    files: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    total_bytes: int = 0

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": path, "reason": reason})

    def room_for(self, path: str, size: int) -> bool:
        """Whether a file of `size` bytes fits the per-file and per-version caps (else skipped)."""
        if size > MAX_FILE_BYTES:
            self.skip(path, f"larger than {MAX_FILE_BYTES} bytes ({size})")
            return False
        if len(self.files) >= MAX_VERSION_FILES:
            self.skip(path, f"over the version's limit of {MAX_VERSION_FILES} files")
            return False
        if self.total_bytes + size > MAX_VERSION_BYTES:
            self.skip(path, f"over the version's limit of {MAX_VERSION_BYTES} bytes")
            return False
        return True

    def add(self, path: str, data: bytes) -> None:
        """Keep `data` as the file's text, unless it is binary (not UTF-8, or has a NUL)."""
        if not self.room_for(path, len(data)):
            return
        if b"\x00" in data:
            self.skip(path, "binary")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.skip(path, "binary")
            return
        self.files[path] = text
        self.total_bytes += len(data)


class VersionLimitError(ValueError):
    """A write would make the app larger than one version may be."""


@dataclass
class VersionBudget:
    """What write_file may still add, so the model hears of the version's caps when it writes."""

    sizes: dict[str, int] = field(default_factory=dict)
    max_bytes: int = MAX_VERSION_BYTES
    max_files: int = MAX_VERSION_FILES

    @classmethod
    def holding(cls, files: dict[str, str], **limits: int) -> VersionBudget:
        return cls({path: len(text.encode()) for path, text in files.items()}, **limits)

    def check(self, path: str, size: int) -> None:
        total = sum(self.sizes.values()) - self.sizes.get(path, 0) + size
        if total > self.max_bytes:
            raise VersionLimitError(
                f"writing {path} would make the app {total} bytes, over the {self.max_bytes} "
                "bytes a version holds (dependency and build folders do not count); make files "
                "smaller or remove some"
            )
        if path not in self.sizes and len(self.sizes) >= self.max_files:
            raise VersionLimitError(
                f"writing {path} would make the app more than {self.max_files} files, the most "
                "a version holds; remove files you do not need"
            )

    def record(self, path: str, size: int) -> None:
        self.sizes[path] = size


def read_tree(root: Path) -> Snapshot:
    """The regular files under `root`, read through directory fds, never following a symlink."""
    snapshot = Snapshot()
    for directory, dirnames, filenames, dir_fd in os.fwalk(root, follow_symlinks=False):
        relative = Path(directory).relative_to(root)
        kept = []
        for name in sorted(dirnames):
            path = (relative / name).as_posix()
            if name in SKIPPED_DIRS:
                snapshot.skip(path + "/", "dependency or build folder")
            elif stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
                snapshot.skip(path, "symlink")
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            _read_one(snapshot, (relative / name).as_posix(), name, dir_fd)
    return snapshot


def _read_one(snapshot: Snapshot, path: str, name: str, dir_fd: int) -> None:
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:  # ELOOP: a symlink; or a socket, or gone
        kind = "symlink" if stat.S_ISLNK(_lmode(name, dir_fd)) else "not a regular file"
        snapshot.skip(path, kind)
        return
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            snapshot.skip(path, "not a regular file")
            return
        if not snapshot.room_for(path, info.st_size):
            return
        data = file.read(MAX_FILE_BYTES + 1)
    snapshot.add(path, data)


def _lmode(name: str, dir_fd: int) -> int:
    try:
        return os.lstat(name, dir_fd=dir_fd).st_mode
    except OSError:
        return 0
