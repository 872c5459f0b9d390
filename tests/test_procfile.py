"""Every Procfile line starts on a fresh clone, after its `release` line and nothing else.

Each line runs alone, through honcho as a platform would run it, in its own copy of the repository
(the files a clone has: no `.data`, no caches), against the tests' database and Redis. `release`
runs first, as platforms run it before starting a new version's processes: it must exit 0 having
migrated the database and prepared the framework templates (here the shared folder, prepared
once per machine, so it finds them ready). A long-running line passes once it shows it is up
(below); it fails if it exits first, or if its wait runs out.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_clone, gunicorn_port
from tests.procfile_line import ProcfileLine

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WAIT = 60.0  # beat's first sweep is due 15 s after it starts
# What each long-running line prints once it is up.
UP = {
    "web": "Booting worker",
    "worker": " ready.",
    "reaper": " ready.",
    "beat": "Sending due task reap-stuck-runs",
    "flower": "Visit me at",
}
# Lines that run once and exit 0 (a platform's release phase), and what each must have printed.
ONCE = {
    "release": ("database is up to date", "nextjs: already prepared", "angular: already prepared"),
}


def _procfile_names() -> list[str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return [line.split(":", 1)[0] for line in lines if line.strip() and not line.startswith("#")]


def test_markers_cover_every_procfile_line() -> None:
    assert sorted(_procfile_names()) == sorted([*UP, *ONCE])


@pytest.mark.timeout(900)  # the first session on a machine prepares all five templates
def test_every_procfile_line_starts_on_a_fresh_clone(
    clone: Path, database_url: str, redis_url: str, all_templates: Path
) -> None:
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(clone),  # this clone's code, not the installed checkout's
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "AUTH_SECRET": "procfile-test-secret-procfile-test-secret",
        "QUEUE_NAME": f"procfile-{uuid.uuid4().hex[:8]}",
        "SANDBOX_TEMPLATES": str(all_templates),
        "PORT": "0",  # gunicorn binds a port of its choosing and says which
        "FLOWER_PORT": "0",
        "WEB_WORKERS": "1",
        "WORKER_CONCURRENCY": "1",
    }
    release = ProcfileLine("release", clone, env)
    try:
        release.process.wait(timeout=120)
    finally:
        release.stop()
    said = "".join(release.output)
    assert release.process.returncode == 0, said[-3000:]
    for marker in ONCE["release"]:
        assert marker in said, f"release did not print {marker!r}:\n{said[-3000:]}"
    # Each line in a clone of its own, so no line creates a folder another one needs.
    homes = {
        name: clone if i == 0 else fresh_clone(clone.parent / f"repo-{name}")
        for i, name in enumerate(UP)
    }
    lines = {
        name: ProcfileLine(name, home, env | {"PYTHONPATH": str(home)})
        for name, home in homes.items()
    }
    try:
        pending = set(lines)
        deadline = time.monotonic() + WAIT
        while pending:
            for name in sorted(pending):
                line = lines[name]
                up = line.seen(UP[name])
                if up and name == "web":
                    port = gunicorn_port("".join(line.output))
                    with contextlib.suppress(httpx.HTTPError):
                        up = bool(port) and httpx.get(f"http://127.0.0.1:{port}/healthz").is_success
                    up = up is True
                if up:
                    pending.discard(name)
                elif line.exited():
                    raise AssertionError(f"{name} exited early:\n{''.join(line.output)[-3000:]}")
            if pending and time.monotonic() > deadline:
                tails = {n: "".join(lines[n].output)[-1500:] for n in pending}
                raise AssertionError(
                    f"timed out after {WAIT}s waiting for {sorted(pending)}: {tails}"
                )
            time.sleep(0.2)
        for name, line in lines.items():
            assert not line.exited(), f"{name} exited:\n{''.join(line.output)[-3000:]}"
    finally:
        for line in lines.values():
            line.stop()
