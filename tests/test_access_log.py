"""The Procfile's web line, run for real: its access log never contains a token (DESIGN section 15),
and without AUTH_SECRET or AUTH_JWKS_URL it refuses to start, saying what to set."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from orchestrator.settings import Settings
from orchestrator.tokens import user_token
from tests.conftest import SECRET, gunicorn_port
from web.access_log import redact

ROOT = Path(__file__).resolve().parent.parent


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} line in the Procfile")


def start_web(settings: Settings, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if k not in ("AUTH_SECRET", "AUTH_JWKS_URL")}
    base.update(
        PORT=str(port),
        WEB_WORKERS="1",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        **env,
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            ["bash", "-c", f"exec {procfile_line('web')}"],
            cwd=ROOT,
            env=base,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def web(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "web.log"
    process = start_web(settings, 0, log, AUTH_SECRET=SECRET)  # gunicorn picks the port
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            port = gunicorn_port(log.read_text())
            try:
                if port and httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"gunicorn did not answer: {log.read_text()}"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", log
    finally:
        stop(process)


def test_the_access_log_shows_requests_but_never_a_token(web: tuple[str, Path]) -> None:
    base, log = web
    message_id = str(uuid.uuid4())
    events_token = jwt.encode(
        {"sub": "u", "msg": message_id, "aud": "events", "exp": int(time.time()) + 60},
        "whatever-secret-whatever-secret-0123",
        "HS256",
    )
    user = user_token(SECRET, "log_user")
    marker = f"plain-{uuid.uuid4().hex}"
    httpx.get(f"{base}/api/messages/{message_id}/events", params={"token": events_token})
    httpx.get(f"{base}/api/me", params={"access_token": marker, "x": "1"})
    httpx.get(
        f"{base}/api/me",
        headers={"Authorization": f"Bearer {user}", "Referer": f"{base}/?token={marker}"},
    )
    # Access lines are written after each answer; the last request's line is the one to wait for.
    deadline = time.monotonic() + 20
    while log.read_text().count('"GET /api/me') < 2:
        assert time.monotonic() < deadline, f"no access log lines: {log.read_text()}"
        time.sleep(0.1)
    text = log.read_text()
    assert f"/api/messages/{message_id}/events" in text  # the request is logged...
    for secret in (events_token, user, marker, events_token.split(".")[1]):
        assert secret not in text, f"a token reached the log:\n{text}"  # ...its token is not
    assert "token=[redacted]" in text


def test_the_web_line_refuses_to_start_without_auth_and_says_what_to_set(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "web.log"
    process = start_web(settings, 0, log)
    try:
        process.wait(timeout=60)
    finally:
        stop(process)
    assert process.returncode != 0
    assert "Neither AUTH_SECRET nor AUTH_JWKS_URL is set" in log.read_text()


def test_redact_scrubs_every_shape_of_token() -> None:
    token = user_token(SECRET, "someone")
    line = f'GET /api/x?a=1&token={token}&id_token=abc HTTP/1.1 "Bearer {token}"'
    scrubbed = redact(line)
    assert token not in scrubbed and "abc" not in scrubbed
    assert scrubbed.startswith("GET /api/x?a=1&token=[redacted]&id_token=[redacted]")


def test_werkzeugs_request_lines_carry_no_token_either(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from werkzeug.serving import make_server

    from web import create_app

    app = create_app(settings)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    token = user_token(SECRET, "werkzeug_user")
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            httpx.get(f"http://127.0.0.1:{http.server_port}/api/me", params={"token": token})
    finally:
        http.shutdown()
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/api/me" in line for line in lines), lines
    assert not any(token in line for line in lines), lines
