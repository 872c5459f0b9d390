"""POST /api/messages throughput and latency under gunicorn + PostgreSQL, against a bare baseline.

    .venv/bin/python -m benchmarks.post_messages [--requests 2000] [--concurrency 16]

Both servers run under the Procfile's gunicorn settings; the baseline is a bare Flask endpoint
doing two inserts and one Redis push. No Celery worker runs: queued runs are dropped afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-secret-benchmark-secret-0123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gunicorn(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        str(ROOT / ".venv/bin/gunicorn"), app, "--bind", f"127.0.0.1:{port}",
        # As the Procfile's web process.
        "--worker-class", "gevent", "--workers", "2", "--worker-connections", "4000",
        "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{app} did not start")


def load(
    port: int, requests: list[tuple[str, dict[str, str], bytes]], concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    cursor = iter(range(len(requests)))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            path, headers, body = requests[index]
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                codes[response.status] = codes.get(response.status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "codes": codes,  # type: ignore[dict-item]
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from models.migrate import upgrade
    from orchestrator.settings import normalize_database_url
    from orchestrator.tokens import user_token

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(normalize_database_url(args.database_url))
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in args.database_url else "?"
    url = f"{args.database_url}{sep}options=-csearch_path%3D{schema}"
    upgrade(normalize_database_url(url))
    from benchmarks.baseline_app import metadata as baseline_tables
    from models import make_engine

    baseline_tables.create_all(make_engine(normalize_database_url(url)))
    queue = f"bench-{schema}"
    env = dict(
        os.environ,
        DATABASE_URL=url,
        REDIS_URL=args.redis_url,
        AUTH_SECRET=SECRET,
        QUEUE_NAME=queue,
        DEFAULT_CREDITS="100000",
        LOG_LEVEL="WARNING",
    )
    env["PYTHONPATH"] = str(ROOT)

    try:
        results = {}
        for name, app, make in (
            ("baseline", "benchmarks.baseline_app:create_app()", baseline_requests),
            ("api", "web:create_app()", lambda n: api_requests(n, url, user_token)),
        ):
            port = free_port()
            server = gunicorn(app, port, env)
            try:
                requests = make(args.requests, port) if name == "baseline" else make(args.requests)
                load(port, requests[: min(100, len(requests))], args.concurrency)  # warm up
                results[name] = load(port, requests[100:], args.concurrency)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
        for name, figures in results.items():
            print(
                f"{name:<9} {figures['rps']:8.1f} req/s   p50 {figures['p50_ms']:6.1f} ms   "
                f"p99 {figures['p99_ms']:6.1f} ms   codes {figures['codes']}"
            )
        ratio = results["api"]["rps"] / results["baseline"]["rps"]
        print(f"api/baseline throughput ratio: {ratio:.2f} (target >= 0.70)")
    finally:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        client.delete(queue, "bench-queue")
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))


def baseline_requests(n: int, _port: int) -> list[tuple[str, dict[str, str], bytes]]:
    body = json.dumps({"message": "Build a to-do list app", "projectId": "p"}).encode()
    return [("/bench", {"Content-Type": "application/json"}, body)] * (n + 100)


def api_requests(
    n: int, url: str, token: Callable[..., str]
) -> list[tuple[str, dict[str, str], bytes]]:
    """One conversation per request (a conversation runs one prompt at a time), 50 users."""
    from models import (
        Conversation,
        Plan,
        Project,
        User,
        make_engine,
        make_sessionmaker,
        transaction,
    )
    from orchestrator.settings import normalize_database_url

    factory = make_sessionmaker(make_engine(normalize_database_url(url)))
    users = [f"bench_user_{i}" for i in range(50)]
    out = []
    with transaction(factory) as session:
        for user in users:
            session.add(User(id=user, plan=Plan.FREE, credits=100000))
        session.flush()
        projects = {}
        for user in users:
            project = Project(user_id=user, name="bench")
            session.add(project)
            projects[user] = project
        session.flush()
        conversations = []
        for i in range(n + 100):
            user = users[i % len(users)]
            conversation = Conversation(project_id=projects[user].id, user_id=user, title="b")
            session.add(conversation)
            conversations.append((user, conversation))
        session.flush()
        for user, conversation in conversations:
            body = json.dumps(
                {"message": "Build a to-do list app", "conversationId": conversation.id}
            )
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token(SECRET, user)}",
            }
            out.append(("/api/messages", headers, body.encode()))
    return out


if __name__ == "__main__":
    main()
