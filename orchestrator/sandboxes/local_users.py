"""Who a local command runs as when we are root: a uid of its own for each live sandbox.

Root is exempt from RLIMIT_NPROC, so commands drop to an unprivileged uid. A uid per sandbox (not a
shared `nobody`) keeps one sandbox's fork bomb from starving another's process budget, and lets
cleanup kill every process of that uid, including ones that escaped the process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Far above login users (1000-59999), nobody (65534) and systemd's container ranges.
UID_BASE = 1_950_000_000
UID_SLOTS = 4096


@dataclass
class UidLease:
    """An exclusive claim on one sandbox uid, held as a flock so other worker processes see it."""

    uid: int
    _lock_fd: int | None
    _used: bool = False

    @classmethod
    def acquire(cls, lock_dir: Path) -> UidLease:
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        start = random.randrange(UID_SLOTS)
        for offset in range(UID_SLOTS):
            slot = (start + offset) % UID_SLOTS
            fd = os.open(lock_dir / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            lease = cls(UID_BASE + slot, fd)
            if os.pread(fd, 1, 0):
                # Its last holder ran commands and did not see them die (it crashed): some may
                # still run under this uid. A clean holder leaves the file empty, which spares
                # every new sandbox a helper process (costly from a worker holding many runs).
                kill_all_processes_of(lease.uid)
                os.ftruncate(fd, 0)
            return lease
        raise RuntimeError(f"all {UID_SLOTS} sandbox uids are in use")

    @property
    def used(self) -> bool:
        """True once a command may have run under this uid (see `mark_used`)."""
        return self._used

    def mark_used(self) -> None:
        """Before the first command: a crash from here on leaves the uid to be cleaned."""
        if self._lock_fd is not None and not self._used:
            os.pwrite(self._lock_fd, b"1", 0)
            self._used = True

    def release(self, *, clean: bool = False) -> None:
        """Give the uid back; `clean` when every process of it is known dead."""
        if self._lock_fd is not None:
            if clean and self._used:
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None


def kill_orphans(lock_dir: Path) -> list[int]:
    """SIGKILL the processes of every sandbox uid whose lease nobody holds; the uids it cleaned.

    A worker killed outright releases its leases (the kernel drops its flocks) but not always
    the commands it started: one started just before the kill can outlive bubblewrap's
    --die-with-parent. Holding the lease while killing keeps a new sandbox off that uid meanwhile.
    Only uids leased under `lock_dir` are considered (their lock file exists).
    """
    cleaned = []
    for uid in sorted(_sandbox_uids_with_processes()):
        try:
            fd = os.open(lock_dir / f"{uid - UID_BASE}.lock", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # never leased here
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live sandbox owns it
        else:
            kill_all_processes_of(uid)
            cleaned.append(uid)
        finally:
            os.close(fd)
    return cleaned


def _sandbox_uids_with_processes() -> set[int]:
    uids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
                    if UID_BASE <= uid < UID_BASE + UID_SLOTS:
                        uids.add(uid)
                    break
    return uids


def kill_all_processes_of(uid: int) -> None:
    """SIGKILL every process of `uid`: a helper running as `uid` calls kill(-1), sparing others.

    kill(-1) walks the process list under the kernel's tasklist lock, and a process with SIGKILL
    pending cannot fork, so a fork bomb cannot outrun it.
    """
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            ["/bin/sh", "-c", "kill -KILL -1"],
            user=uid,
            group=uid,
            extra_groups=[],
            env={},
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
