"""The web /metrics covers every gunicorn worker (prometheus-client's multiprocess mode).

gunicorn as the Procfile runs it (its hooks in gunicorn_conf.py), with two workers: requests
spread over both, and whichever worker answers a scrape counts all of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.conftest import SECRET, gunicorn_port, wait_for
from tests.test_metrics import samples, value

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def test_every_gunicorn_worker_is_counted_by_any_scrape(database_url: str, redis_url: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="gunicorn-metrics-"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(data),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "AUTH_SECRET": SECRET,
    }
    argv = [GUNICORN, "web:create_app()", "--config", "python:gunicorn_conf"]
    argv += ["--bind", "127.0.0.1:0", "--worker-class", "gevent", "--workers", "2"]
    argv += ["--logger-class", "web.access_log.RedactingLogger"]  # as the Procfile
    log = (data / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        # Port 0: gunicorn binds one and says which.
        port = wait_for(lambda: gunicorn_port(_log_text(data)), 30, "gunicorn to listen")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(f"{base}/healthz"), 30, "gunicorn to answer")
        sent = 40
        for _ in range(sent):  # fresh connections: both workers take some
            answer = httpx.get(f"{base}/api/me", headers={"Connection": "close"})
            assert answer.status_code == 401
        (folder,) = (data / "metrics").glob("web-*")
        writers = {f.stem.rsplit("_", 1)[1] for f in folder.glob("counter_*.db")}
        assert len(writers) >= 2, f"only {writers} wrote metrics"
        for _ in range(4):  # whichever worker answers the scrape
            scraped = samples(httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text)
            counted = value(scraped, "appforge_http_requests_total", route="/api/me", status="401")
            assert counted == sent
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
    # The default metrics folder was gunicorn's own: removed on exit.
    assert not list((data / "metrics").glob("web-*")), (data / "gunicorn.log").read_text()


def _get(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _log_text(data: Path) -> str:
    return (data / "gunicorn.log").read_text(errors="replace")
