"""Where the local sandbox keeps workspaces and templates: folders its sandbox users can reach.

As root, a sandbox's commands run as a uid of their own (local_users.py), and bubblewrap, started
as that uid, binds the workspace and the template's node_modules from the host: every folder
above them must let other users pass (o+x). A clone under /root (0700 on Debian), or in a
`mktemp -d` folder, does not. So the defaults under DATA_DIR move to a folder of that data
directory's own under /var/lib/appforge (or /tmp when /var/lib cannot be written), which root
makes and alone can write; a folder the operator named (SANDBOX_ROOT, SANDBOX_TEMPLATES) is used
as named, or refused with a sentence that names its setting.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError

# Where the defaults go when sandbox users cannot reach DATA_DIR, in order of preference.
SHARED_HOME = Path("/var/lib/appforge")
TMP_HOME = Path("/tmp")


@dataclass(frozen=True)
class SandboxPlaces:
    """The local sandbox's folders, and a sentence saying why they moved (None: as configured)."""

    root: Path
    templates: Path | None
    moved: str | None = None


def unreachable_through(path: Path) -> Path | None:
    """The topmost existing folder above `path` that other users cannot pass (no o+x), or None.

    Folders that do not exist yet are made by us, enterable (0711 or 0755), so they are not asked.
    """
    for directory in reversed(path.resolve().parents):
        try:
            mode = directory.stat().st_mode
        except FileNotFoundError:
            return None
        if not mode & stat.S_IXOTH:
            return directory
    return None


def refusal(setting: str, path: Path, blocker: Path) -> str:
    return (
        f"{setting}={path} is out of reach of the sandbox users (as root, sandbox commands run "
        f"as uids of their own): {blocker} lacks o+x. Set {setting} to a folder under one every "
        f"user can pass through (e.g. {SHARED_HOME}/{Path(path).name}), or leave it unset"
    )


def choose(
    data_dir: Path, root: Path, templates: Path | None, *, for_other_users: bool
) -> SandboxPlaces:
    """The folders to use for `root` (workspaces) and `templates` (None: off).

    `for_other_users`: commands run as other uids (we are root); otherwise every folder we can
    use, they can. A folder left at its default under `data_dir` moves when they cannot reach it;
    one the operator named must be reachable as it is (ConfigError naming its setting).
    """
    # Absolute, so the log and every refusal say where, whatever the working directory.
    root = Path(os.path.abspath(root))
    templates = Path(os.path.abspath(templates)) if templates is not None else None
    if not for_other_users:
        return SandboxPlaces(root, templates)
    wanted = {"SANDBOX_ROOT": root, "SANDBOX_TEMPLATES": templates}
    defaults = {"SANDBOX_ROOT": data_dir / "sandboxes", "SANDBOX_TEMPLATES": data_dir / "templates"}
    chosen: dict[str, Path | None] = {}
    moving: dict[str, Path] = {}
    blockers: set[Path] = set()
    for setting, path in wanted.items():
        chosen[setting] = path
        if path is None:
            continue
        blocker = unreachable_through(path)
        if blocker is None:
            continue
        if not _same(path, defaults[setting]):
            raise ConfigError(refusal(setting, path, blocker))
        moving[setting] = defaults[setting]
        blockers.add(blocker)
    if not moving:
        return SandboxPlaces(root, templates)
    home = own_home(data_dir)
    for setting, default in moving.items():
        chosen[setting] = home / default.name
    moved = " and ".join(f"{default.name} in {home / default.name}" for default in moving.values())
    why = ", ".join(str(blocker) for blocker in sorted(blockers))
    sentence = (
        f"sandbox users cannot reach {data_dir.resolve()} ({why} lacks o+x, as /root and "
        f"`mktemp -d` folders do), so the local sandbox keeps its {moved} "
        f"({' and '.join(moving)} choose other folders)"
    )
    root_path = chosen["SANDBOX_ROOT"]
    assert root_path is not None
    return SandboxPlaces(root_path, chosen["SANDBOX_TEMPLATES"], sentence)


def own_home(data_dir: Path) -> Path:
    """A folder of `data_dir`'s own that every user can pass through and only we can write.

    Named after the data directory's path, so two checkouts on one machine never share
    workspaces or templates. Under /tmp, where anyone may create a folder first, one we do not
    own (or a link) is refused rather than used.
    """
    problems = []
    for home in candidate_homes(data_dir):
        try:
            if home.parent == SHARED_HOME:  # ours to make; /tmp is the system's
                _private_folder(SHARED_HOME)
            _private_folder(home)
        except OSError as exc:
            problems.append(f"{home}: {exc.strerror or exc}")
            continue
        blocker = unreachable_through(home / "x")
        if blocker is None:
            return home
        problems.append(f"{home}: {blocker} lacks o+x")
    raise ConfigError(
        f"sandbox users cannot reach {data_dir.resolve()}, and no folder they can reach could be "
        f"made ({'; '.join(problems)}). Set SANDBOX_ROOT and SANDBOX_TEMPLATES to folders under "
        "one every user can pass through (o+x)"
    )


def candidate_homes(data_dir: Path) -> list[Path]:
    """Where `data_dir`'s folders may go, in order: named after its path (and its folder)."""
    resolved = data_dir.resolve()
    label = re.sub(r"[^A-Za-z0-9._-]", "-", resolved.parent.name or "data")[:40] or "data"
    key = f"{label}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:10]}"
    return [SHARED_HOME / key, TMP_HOME / f"appforge-{key}"]


def _private_folder(folder: Path) -> None:
    """`folder` exists, is a real folder of ours, enterable by all and writable by us alone."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o711)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(0, "exists and is not a folder")
    if info.st_uid != os.geteuid():
        raise OSError(0, f"owned by uid {info.st_uid}, not by us")
    folder.chmod(0o711)  # whatever the umask or an earlier run left


def _same(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)
