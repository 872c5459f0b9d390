"""Cancel latency: DELETE until the API answered, until the model's connection closed.

    .venv/bin/python -m benchmarks.cancel_latency [--cancels 100]

A real Celery worker (threads pool, in process), the real web app on a threaded server and a
fake OpenAI-compatible model. Half the runs are cancelled while text streams, half while the
model is silent (a blocked read). Uses DATABASE_URL/REDIS_URL when set, else SQLite and the
bundled Redis.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from celery.contrib.testing.worker import start_worker
from werkzeug.serving import make_server

from models.migrate import upgrade
from orchestrator.settings import ProviderConfig, Settings, normalize_database_url
from orchestrator.tokens import user_token
from orchestrator.wiring.bundled_redis import BundledRedis, free_port
from tests.fakes.llm_server import FakeLLM, Hang, Reply
from web import create_app
from workers.worker import create_worker_app

SECRET = "benchmark-secret-benchmark-secret-0123"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cancels", type=int, default=100)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="cancel-bench-"))
    bundled = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        bundled = BundledRedis(scratch / "redis").start()
        redis_url = bundled.url
    database_url = normalize_database_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{scratch / 'bench.db'}"
    )
    if database_url.startswith("postgresql"):
        import sqlalchemy

        schema = f"cancel_{uuid.uuid4().hex[:8]}"
        with sqlalchemy.create_engine(database_url).begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in database_url else "?"
        database_url = f"{database_url}{sep}options=-csearch_path%3D{schema}"
    upgrade(database_url)
    sandboxes = tempfile.mkdtemp(prefix="cancel-bench-sbx-")
    os.chmod(sandboxes, 0o755)

    with FakeLLM() as llm:
        port = free_port()
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            auth_secret=SECRET,
            default_credits=10 * args.cancels,
            providers=(ProviderConfig("primary", llm.base_url, "k", "bench-model"),),
            sandbox_root=sandboxes,
            sandbox_isolation="best-effort",  # runs no command; works without bubblewrap
            queue_name=f"bench-{uuid.uuid4().hex[:8]}",
            public_url=f"http://127.0.0.1:{port}",
        )
        celery = create_worker_app(settings)
        server = make_server("127.0.0.1", port, create_app(settings, celery=celery), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        client = httpx.Client(
            base_url=settings.public_url,
            headers={"Authorization": f"Bearer {user_token(SECRET, 'bench-user')}"},
            timeout=30,
        )
        project = client.post("/api/projects", json={"name": "bench"}).json()
        figures: dict[str, dict[str, list[float]]] = {}
        with start_worker(
            celery, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING"
        ):
            for i in range(args.cancels):
                mode = "streaming" if i % 2 == 0 else "silent"
                llm.reset()
                llm.script(
                    Reply("word " * 400, chunk_size=5, delay=0.02)
                    if mode == "streaming"
                    else Hang(60)
                )
                sent = client.post(
                    "/api/messages", json={"message": "Build it", "projectId": project["id"]}
                ).json()
                # This run's own request reached the model (and, streaming, text reached us).
                _wait(
                    lambda: bool(llm.requests) and (mode == "silent" or _has_text(client, sent))  # noqa: B023
                )
                started = time.perf_counter()
                answer = client.delete(f"/api/messages/{sent['messageId']}")
                answered = time.perf_counter() - started
                assert answer.status_code == 200, answer.text
                if not llm.wait_for_disconnect(timeout=10):
                    status = client.get(f"/api/messages/{sent['messageId']}").json()["status"]
                    raise RuntimeError(
                        f"cancel {i} ({mode}): the model connection was never closed; "
                        f"requests {len(llm.requests)}, active {llm.active}, status {status}"
                    )
                closed = time.perf_counter() - started
                bucket = figures.setdefault(mode, {"answered": [], "closed": []})
                bucket["answered"].append(answered * 1000)
                bucket["closed"].append(closed * 1000)
        server.shutdown()

    print(f"{args.cancels} cancels ({settings.database_url.split(':')[0]}, Redis {redis_url})")
    for mode, bucket in figures.items():
        for name, values in bucket.items():
            label = "DELETE answered" if name == "answered" else "model connection closed"
            print(
                f"{mode:<10} {label:<24} p50 {statistics.median(values):7.1f} ms   "
                f"p99 {percentile(values, 0.99):7.1f} ms   max {max(values):7.1f} ms"
            )
    if bundled is not None:
        bundled.stop()


def _has_text(client: httpx.Client, sent: dict[str, str]) -> bool:
    return bool(client.get(f"/api/messages/{sent['messageId']}").json()["content"])


def _wait(check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError("the run never started")
        time.sleep(0.01)


if __name__ == "__main__":
    main()
