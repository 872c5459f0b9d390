"""What the AI SDK's UI message stream costs the web process per event, against the plain SSE
stream of the same events, measured in the same run (issue 22).

    .venv/bin/python -m benchmarks.ui_streams [--streams 500] [--events 40] [--rounds 2]

Runs the Procfile's `web:` command with one worker (`--gunicorn-args` appended), as
benchmarks/streams.py does (SQLite, or `--database-url`; REDIS_URL).
Each round opens `--streams` SSE streams (`/events`), one per running message, appends
`--events` deltas to every stream (all streams at once, in batches, as a busy worker pool
would), waits until every client has every delta, and reads the worker's CPU time; then the
same with `--streams` UI message streams (`/ui-stream`) on other messages. It prints CPU
microseconds per delivered event of each, and the ratio ui/sse.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from benchmarks.streams import SECRET, free_port, seed, start_web

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Client:
    ok: bool = False
    deltas: int = 0
    closed: bool = False


async def follow(port: int, token: str, path: str, marker: bytes, client: Client) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.0\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    try:
        client.ok = b" 200 " in await reader.readline()
        while line := await reader.readline():
            if marker in line:
                client.deltas += 1
    except (ConnectionError, OSError):
        pass
    finally:
        client.closed = True
        writer.close()


def worker_cpu(master: psutil.Process) -> float:
    return sum(sum(w.cpu_times()[:2]) for w in master.children(recursive=True))


async def measure(kind: str, args: argparse.Namespace, port: int, token: str, ids: list[str],
                  log: object, master: psutil.Process) -> tuple[float, int]:  # fmt: skip
    from orchestrator.streams.events import DeltaEvent, EventLog

    assert isinstance(log, EventLog)
    path, marker = {
        "sse": ("/api/messages/{}/events", b'data: {"text":'),
        "ui": ("/api/messages/{}/ui-stream", b'"type":"text-delta"'),
    }[kind]
    clients = [Client() for _ in ids]
    tasks = []
    for n, (message_id, client) in enumerate(zip(ids, clients, strict=True)):
        tasks.append(asyncio.create_task(follow(port, token, path.format(message_id), marker,
                                                client)))  # fmt: skip
        if n % 50 == 49:
            await asyncio.sleep(0.05)
    deadline = time.monotonic() + 60
    while not all(c.ok for c in clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # each has its replay
    if not all(c.ok and not c.closed for c in clients):
        raise RuntimeError(f"{kind}: only {sum(c.ok for c in clients)} streams opened")
    before = worker_cpu(master)
    for n in range(args.events):
        batch = {message_id: [DeltaEvent(f"w{n} ")] for message_id in ids}
        await asyncio.to_thread(log.append_many, batch)  # type: ignore[arg-type]
        await asyncio.sleep(args.interval)
    want = len(ids) * args.events
    deadline = time.monotonic() + 120
    while sum(c.deltas for c in clients) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind}: {sum(c.deltas for c in clients)} of {want} delivered")
        await asyncio.sleep(0.05)
    spent = worker_cpu(master) - before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)  # the process lets the streams go
    return spent, want


async def run(args: argparse.Namespace, port: int, master: psutil.Process, token: str,
              ids: list[str], log: object) -> None:  # fmt: skip
    figures: dict[str, list[float]] = {"sse": [], "ui": []}
    n = args.streams
    # One stream alone first: it builds the process's hub, outside the measured rounds.
    warm = Client()
    task = asyncio.create_task(follow(port, token, f"/api/messages/{ids[-1]}/events", b"", warm))
    await asyncio.sleep(2.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for round_ in range(args.rounds):
        for kind in ("sse", "ui"):
            start = (2 * round_ + (kind == "ui")) * n
            spent, events = await measure(kind, args, port, token, ids[start : start + n], log,
                                          master)  # fmt: skip
            figures[kind].append(spent / events * 1e6)
            print(f"round {round_ + 1} {kind:>3}: {events} events to {n} streams, "
                  f"worker CPU {spent:.2f} s, {figures[kind][-1]:.1f} us/event")  # fmt: skip
    sse, ui = min(figures["sse"]), min(figures["ui"])
    ratio = f"{ui / sse:.2f}x" if sse else "n/a (too few events to measure)"
    print(f"\nbest of {args.rounds}: sse {sse:.1f} us/event, ui {ui:.1f} us/event, "
          f"ratio ui/sse {ratio}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--events", type=int, default=40, help="deltas per stream")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between batches")
    parser.add_argument("--gunicorn-args", default="", help="flags appended to the Procfile line")
    parser.add_argument("--database-url", default=None, help="PostgreSQL; default a SQLite file")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import resource

    from models.migrate import upgrade
    from orchestrator.settings import normalize_database_url
    from orchestrator.streams.events import EventLog, StatusEvent, stream_key
    from orchestrator.tokens import user_token

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    workdir = tempfile.mkdtemp(prefix="bench-ui-streams-")
    url = args.database_url or f"sqlite:///{workdir}/bench.db"
    upgrade(normalize_database_url(url))
    user, ids = seed(normalize_database_url(url), 2 * args.rounds * args.streams + 1)
    client = redis.Redis.from_url(args.redis_url)
    log = EventLog(client, ttl=600)
    for message_id in ids:
        log.append(message_id, StatusEvent("STREAMING"))
    env = dict(
        os.environ,
        DATABASE_URL=url,
        REDIS_URL=args.redis_url,
        AUTH_SECRET=SECRET,
        DATA_DIR=workdir,
        SSE_PING_INTERVAL="5",
        QUEUE_NAME=f"bench-{uuid.uuid4().hex[:8]}",
        PYTHONPATH=str(ROOT),
    )
    port = free_port()
    process = start_web(port, env, args.gunicorn_args)
    try:
        asyncio.run(run(args, port, psutil.Process(process.pid),
                        user_token(SECRET, user), ids, log))  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            process.kill()
        client.delete(*[stream_key(i) for i in ids])
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
