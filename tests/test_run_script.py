"""The README's run command, `scripts/run`, from a clone in a folder only root can enter.

That is how most people first try the product in a container or a fresh VM: as root, in /root
(0700 on Debian). The clone is the repository's files as a clone has them, in a `mktemp -d`
folder (0700 too); `scripts/run` then runs as it is, with its bootstrap, its checks, its
`orchestrator sandbox prepare` and `orchestrator dev` (honcho: web, worker, beat, reaper, on
SQLite and the bundled Redis, with the offline demo model), and the demo's run must end COMPLETE
with its preview served.

What the test gives the clone to keep its cost down, and why that does not change what is tested:
- `.venv`: `scripts/bootstrap` would create it with pip from PyPI (a minute or more, and the
  network). Instead the clone gets a venv of the same interpreter whose site-packages lists the
  clone first and this checkout's site-packages after it (the same dependencies, already
  installed), with the console scripts `scripts/run` and `orchestrator dev` call, stamped up to
  date, so bootstrap finds nothing to do. Every module of the product is imported from the clone.
- The framework templates: `SANDBOX_TEMPLATES` names the tests' shared prepared folder (all five,
  prepared once per machine), so `orchestrator sandbox prepare` finds them ready rather than
  spending minutes in `npm ci`. Where the defaults under a private folder go is
  tests/test_sandbox_places.py's, with a real sandbox uid; here the workspaces' root moves.
- A React project rather than the default Next.js one: the same path through the worker and the
  sandbox, with a build of about 4 s instead of about 40 s of CPU.
- `PORT=0`: gunicorn binds a port of its own choosing and the test reads it from its log (the
  URLs the dev mode prints then say port 0; the test reads their paths).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.sandboxes.places import candidate_homes
from tests.conftest import SANDBOX_ROOTS, fresh_clone, gunicorn_port, wait_for

BIN = Path(sys.executable).parent
TERMINAL = ("COMPLETE", "FAILED", "CANCELLED")

pytestmark = pytest.mark.needs_root


@pytest.fixture
def private_clone() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="appforge-root-"))
    assert home.stat().st_mode & 0o777 == 0o700  # as /root is
    clone = fresh_clone(home / "appforge")
    try:
        yield clone
    finally:
        shutil.rmtree(home, ignore_errors=True)
        for moved in candidate_homes(clone / ".data"):
            shutil.rmtree(moved, ignore_errors=True)


def _venv_for(clone: Path) -> None:
    """A `.venv` that `scripts/bootstrap` finds up to date, without a pip install (see above)."""
    base = getattr(sys, "_base_executable", sys.executable)
    venv = clone / ".venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    ours = sysconfig.get_paths()["purelib"]
    # The clone before our site-packages: its code wins over this checkout's editable install.
    (site / "00-appforge-clone.pth").write_text(
        f"{clone}\nimport site; site.addsitedir({ours!r})\n"
    )
    for name in ("orchestrator", "celery", "gunicorn"):
        body = (BIN / name).read_text().split("\n", 1)[1]  # the entry point, without our #!
        script = venv / "bin" / name
        script.write_text(f"#!{venv / 'bin' / 'python'}\n{body}")
        script.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: nothing to install


class _Output:
    """What a process prints, collected by a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(list(self.lines))


@pytest.mark.timeout(900)  # the first session on a machine prepares all five templates
def test_scripts_run_from_a_clone_in_a_private_folder_serves_a_demo_run_and_its_preview(
    private_clone: Path, all_templates: Path
) -> None:
    clone = private_clone
    _venv_for(clone)
    SANDBOX_ROOTS.extend(str(home / "sandboxes") for home in candidate_homes(clone / ".data"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PORT": "0",
        "SANDBOX_TEMPLATES": str(all_templates),
        "WEB_WORKERS": "1",
        "WORKER_CONCURRENCY": "2",
        "WORKER_METRICS_PORT": "0",  # not the machine's 9540, which other runs may hold
    }
    process = subprocess.Popen(
        [str(clone / "scripts" / "run")],
        cwd="/",  # it finds its repository itself
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = _Output(process)

    def seen(*markers: str) -> Any:
        """The first line printed with every one of `markers`; fails once scripts/run exits."""
        assert process.poll() is None, f"scripts/run exited:\n{output.text()[-4000:]}"
        return next((line for line in output.lines if all(m in line for m in markers)), None)

    try:
        link = wait_for(lambda: seen("sign in as 'demo': "), 120, "the sign-in link")
        token = link.split("#token=", 1)[1].strip()
        port = wait_for(lambda: seen("Listening at") and gunicorn_port(output.text()), 120, "web")
        wait_for(lambda: seen("worker.1 ", " ready."), 120, "the worker")
        said = output.text()
        assert "sandbox users cannot reach" in said, said[-4000:]  # the worker says where...
        assert "/var/lib/appforge/" in said  # ...its sandboxes went instead

        base = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        project = http.post("/api/projects", json={"name": "Todo", "framework": "REACT"}).json()
        sent = http.post(
            "/api/messages", json={"message": "Build a to-do list app", "projectId": project["id"]}
        )
        assert sent.status_code == 201, sent.text
        message_id = sent.json()["messageId"]

        def finished() -> dict[str, Any] | None:
            assert process.poll() is None, f"scripts/run exited:\n{output.text()[-4000:]}"
            found = http.get(f"/api/messages/{message_id}").json()
            return found if found["status"] in TERMINAL else None

        message = wait_for(finished, 240, "the demo run to end")
        assert message["status"] == "COMPLETE", (message, output.text()[-4000:])
        fragment = http.get(f"/api/messages/{message_id}/fragment").json()
        assert fragment["metadata"]["build"]["status"] == "passed", fragment["metadata"]
        path = f"/preview/{fragment['id']}/"
        assert fragment["sandboxUrl"].endswith(path)
        preview = httpx.get(f"{base}{path}", timeout=30)
        assert preview.status_code == 200
        assert 'src="./assets/' in preview.text  # the build's page, not the sources
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, as a terminal's Ctrl-C or a container stop: `orchestrator dev` stops honcho,
    which stops every line, then the bundled Redis."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    time.sleep(0.2)
