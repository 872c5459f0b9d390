"""Event streams under gunicorn's gevent worker, as the Procfile runs the web process: streams
that reach a fresh worker together all open (the first ones build the process's hub)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import httpx

from orchestrator.tokens import user_token
from tests.conftest import SECRET, gunicorn_port, wait_for
from tests.test_metrics_gunicorn import GUNICORN, ROOT, _get


def test_streams_arriving_together_at_a_fresh_gevent_worker_all_open(
    database_url: str, redis_url: str
) -> None:
    data = Path(tempfile.mkdtemp(prefix="gunicorn-streams-"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(data),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "AUTH_SECRET": SECRET,
        "SSE_PING_INTERVAL": "1",
    }
    argv = [GUNICORN, "web:create_app()", "--config", "python:gunicorn_conf"]
    argv += ["--bind", "127.0.0.1:0", "--worker-class", "gevent", "--workers", "1"]
    argv += ["--logger-class", "web.access_log.RedactingLogger", "--timeout", "10"]
    log = (data / "gunicorn.log").open("wb")
    base, headers, sent_ids = "", {}, []
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        text = lambda: (data / "gunicorn.log").read_text(errors="replace")  # noqa: E731
        port = wait_for(lambda: gunicorn_port(text()), 30, "gunicorn to listen")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(f"{base}/healthz"), 30, "gunicorn to answer")
        headers["Authorization"] = f"Bearer {user_token(SECRET, 'gevent_user')}"
        paths: list[str] = []
        with httpx.Client(base_url=base, headers=headers, timeout=20) as client:
            for n in range(4):
                project = client.post("/api/projects", json={"name": f"p{n}"}).json()
                sent = client.post(
                    "/api/messages", json={"message": "Build it", "projectId": project["id"]}
                )
                assert sent.status_code == 201, sent.text
                message_id = sent.json()["messageId"]
                sent_ids.append(message_id)
                paths += [f"/api/messages/{message_id}/events"]
                paths += [f"/api/messages/{message_id}/ui-stream"]
        opened: list[str] = []
        start = threading.Barrier(len(paths))

        def open_stream(path: str) -> None:
            start.wait()
            with (
                httpx.Client(base_url=base, headers=headers, timeout=20) as client,
                client.stream("GET", path) as answer,
            ):
                for line in answer.iter_lines():
                    if line.startswith("data:"):
                        opened.append(path)
                        return

        threads = [threading.Thread(target=open_stream, args=(p,), daemon=True) for p in paths]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(opened) == len(paths), 25, f"{len(paths)} streams to open")
        assert "WORKER TIMEOUT" not in text()
    finally:
        # No worker takes these runs here: end them, so the next tests find none running.
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.Client(base_url=base, headers=headers, timeout=20) as client,
        ):
            for message_id in sent_ids:
                client.delete(f"/api/messages/{message_id}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
