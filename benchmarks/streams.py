"""How many SSE streams one web process holds, and what the web hop adds to event latency.

    .venv/bin/python -m benchmarks.streams [--levels 100,500,1000,2000] [--gunicorn-args "..."]

Runs the Procfile's `web:` command with one worker, bound to 127.0.0.1 (all traffic is loopback),
on SQLite (or `--database-url`, a fresh PostgreSQL schema) and REDIS_URL. It then:

1. opens idle streams in steps (each on its own running message, which replays one `status` and
   then waits), holds each step past a ping interval, and counts the streams still connected that
   received a `: ping`, with the worker's RSS and thread count;
2. with those streams still open, appends timestamped deltas with EventLog.append at a steady rate
   and measures append -> SSE client latency, against raw Redis XADD -> XREAD BLOCK latency of the
   same rate measured in the same run, and prints the ratio.

`--gunicorn-args` appends flags to the Procfile line (later flags win), e.g. to compare worker
classes: `--gunicorn-args "--worker-class gthread --threads 1100"`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
import sqlalchemy

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-secret-benchmark-secret-0123"


@dataclass
class Conn:
    """One SSE client: what it has seen so far."""

    headers_ok: bool = False
    events: int = 0
    pings: int = 0
    closed: bool = False
    error: str | None = None
    latencies: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def procfile_web() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.partition(":")[2].strip()
    raise RuntimeError("Procfile has no web: line")


def start_web(port: int, env: dict[str, str], extra: str) -> subprocess.Popen[bytes]:
    command = procfile_web().replace("0.0.0.0", "127.0.0.1") + " --log-level warning " + extra
    env = dict(env, PORT=str(port), WEB_WORKERS="1", PATH=f"{ROOT / '.venv/bin'}:{env['PATH']}")
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )  # the access log goes to stdout
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            time.sleep(1.0)  # the worker imports the app after the master binds
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the web process did not start")


def seed(url: str, n: int) -> tuple[str, list[str]]:
    """One user with n running assistant messages (one conversation each); their ids."""
    from models import (
        Conversation,
        Message,
        Project,
        Status,
        User,
        make_engine,
        make_sessionmaker,
        transaction,
    )

    factory = make_sessionmaker(make_engine(url))
    user = f"bench_{uuid.uuid4().hex[:8]}"
    ids: list[str] = []
    with transaction(factory) as session:
        session.add(User(id=user, plan="FREE", credits=0))
        session.flush()
        project = Project(user_id=user, name="bench")
        session.add(project)
        session.flush()
        conversations = [
            Conversation(project_id=project.id, user_id=user, title=f"c{i}") for i in range(n)
        ]
        session.add_all(conversations)
        session.flush()
        for conversation in conversations:
            message = Message(
                conversation_id=conversation.id,
                project_id=project.id,
                user_id=user,
                role="ASSISTANT",
                content="",
                type="STREAMING",
                status=Status.STREAMING,
                run_id=str(uuid.uuid4()),
            )
            session.add(message)
            session.flush()
            ids.append(message.id)
    return user, ids


async def open_stream(port: int, token: str, message_id: str, conn: Conn) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        conn.error, conn.closed = type(exc).__name__, True
        return
    # HTTP/1.0: the body is the raw event stream, no chunked framing to undo.
    writer.write(
        f"GET /api/messages/{message_id}/events HTTP/1.0\r\nHost: bench\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    try:
        status = await reader.readline()
        conn.headers_ok = b" 200 " in status
        while (line := await reader.readline()) not in (b"\r\n", b""):
            pass
        while line := await reader.readline():
            if line.startswith(b": ping"):
                conn.pings += 1
            elif line.startswith(b"event:"):
                conn.events += 1
            elif line.startswith(b'data: {"text":"'):
                sent = int(line[15:].split(b'"', 1)[0])
                conn.latencies.append((time.perf_counter_ns() - sent) / 1e6)
    except (ConnectionError, OSError) as exc:
        conn.error = type(exc).__name__
    finally:
        conn.closed = True
        writer.close()


def worker_figures(master: psutil.Process) -> tuple[float, int]:
    workers = master.children(recursive=True)
    return sum(w.memory_info().rss for w in workers) / 2**20, sum(w.num_threads() for w in workers)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def paced(rate: float, duration: float, send: Callable[[int], object]) -> int:
    """Call send(timestamp) `rate` times a second for `duration` seconds; the count sent."""
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        send(time.perf_counter_ns())  # CLOCK_MONOTONIC: comparable across threads and processes
        sent += 1
        delay = start + sent / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return sent


def raw_latency(url: str, rate: float, duration: float) -> list[float]:
    """XADD -> XREAD BLOCK on a plain stream, no web process in between."""
    key = f"bench:raw:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(url)
    latencies: list[float] = []
    done = threading.Event()

    def read() -> None:
        reader = redis.Redis.from_url(url)
        cursor: Any = "0-0"
        while not done.is_set():
            reply: Any = reader.xread({key: cursor}, block=500)
            for _key, entries in reply or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    latencies.append((time.perf_counter_ns() - int(fields[b"t"])) / 1e6)

    thread = threading.Thread(target=read)
    thread.start()
    time.sleep(0.3)
    paced(rate, duration, lambda ts: client.xadd(key, {"t": ts}, maxlen=10000))
    time.sleep(0.5)
    done.set()
    thread.join()
    client.delete(key)
    return latencies


async def run(args: argparse.Namespace, port: int, master: psutil.Process, token: str,
              ids: list[str], client: redis.Redis) -> None:  # fmt: skip
    from orchestrator.streams.events import DeltaEvent, EventLog

    conns: list[Conn] = []
    tasks: list[asyncio.Task[None]] = []
    rss, threads = worker_figures(master)
    print(f"worker idle: RSS {rss:.0f} MiB, {threads} threads")
    print(f"{'streams':>8} {'connected':>10} {'pinged':>7} {'RSS MiB':>8} {'threads':>8} "
          f"{'open s':>7}")  # fmt: skip
    for level in args.levels:
        started = time.perf_counter()
        while len(conns) < level:
            conn = Conn()
            conns.append(conn)
            tasks.append(asyncio.create_task(open_stream(port, token, ids[len(conns) - 1], conn)))
            if len(conns) % 50 == 0:
                await asyncio.sleep(0.05)  # a steady ramp, not one burst of SYNs
        opened = time.perf_counter() - started
        before = [c.pings for c in conns]
        await asyncio.sleep(2 * args.ping)  # every stream pings at least once in that window
        alive = sum(1 for c in conns if c.headers_ok and not c.closed)
        pinged = sum(1 for c, b in zip(conns, before, strict=True) if c.pings > b and not c.closed)
        rss, threads = worker_figures(master)
        errors: dict[str, int] = {}
        for c in conns:
            if c.error or not c.headers_ok:
                kind = c.error or ("no answer" if not c.closed else "refused")
                errors[kind] = errors.get(kind, 0) + 1
        print(
            f"{level:>8} {alive:>10} {pinged:>7} {rss:>8.0f} {threads:>8} {opened:>7.1f}"
            + (f"   failures {errors}" if errors else "")
        )

    raw = raw_latency(args.redis_url, args.rate, args.duration)
    events = EventLog(client)
    probe = Conn()
    target = ids[len(conns)]
    task = asyncio.create_task(open_stream(port, token, target, probe))
    await asyncio.sleep(1.0)
    await asyncio.to_thread(
        paced, args.rate, args.duration, lambda ts: events.append(target, DeltaEvent(str(ts)))
    )
    await asyncio.sleep(1.0)
    sse = probe.latencies
    print(f"\nlatency at {args.rate:.0f} events/s for {args.duration:.0f} s, "
          f"with {len(conns)} idle streams open:")  # fmt: skip
    if not raw or not sse:
        print(f"  no latency figures: {len(raw)} raw, {len(sse)} SSE samples")
        return
    for name, values in (("redis XADD->XREAD BLOCK", raw), ("EventLog.append->SSE client", sse)):
        print(
            f"  {name:<28} n={len(values):<5} p50 {statistics.median(values):6.2f} ms   "
            f"p99 {percentile(values, 0.99):6.2f} ms"
        )
    print(
        f"  ratio sse/raw: p50 {statistics.median(sse) / statistics.median(raw):.1f}x   "
        f"p99 {percentile(sse, 0.99) / percentile(raw, 0.99):.1f}x"
    )
    for t in [*tasks, task]:
        t.cancel()
    await asyncio.gather(*tasks, task, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="100,500,1000,2000")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per latency run")
    # The production default is 15 s; a shorter one keeps the run short.
    parser.add_argument("--ping", type=float, default=5.0, help="SSE_PING_INTERVAL, seconds")
    parser.add_argument("--gunicorn-args", default="", help="flags appended to the Procfile line")
    parser.add_argument("--database-url", default=None, help="PostgreSQL; default a SQLite file")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    args.levels = sorted(int(n) for n in args.levels.split(","))
    sys.path.insert(0, str(ROOT))
    from models.migrate import upgrade
    from orchestrator.settings import normalize_database_url
    from orchestrator.streams.events import stream_key
    from orchestrator.tokens import user_token

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # gunicorn inherits it
    workdir = tempfile.mkdtemp(prefix="bench-streams-")
    admin, schema = None, None
    if args.database_url:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sqlalchemy.create_engine(normalize_database_url(args.database_url))
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in args.database_url else "?"
        url = f"{args.database_url}{sep}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{workdir}/bench.db"
    upgrade(normalize_database_url(url))
    user, ids = seed(normalize_database_url(url), args.levels[-1] + 1)
    client = redis.Redis.from_url(args.redis_url)
    from orchestrator.streams.events import EventLog, StatusEvent

    log = EventLog(client, ttl=600)
    for message_id in ids:
        log.append(message_id, StatusEvent("STREAMING"))
    env = dict(
        os.environ,
        DATABASE_URL=url,
        REDIS_URL=args.redis_url,
        AUTH_SECRET=SECRET,
        DATA_DIR=workdir,
        SSE_PING_INTERVAL=str(args.ping),
        QUEUE_NAME=f"bench-{uuid.uuid4().hex[:8]}",
        PYTHONPATH=str(ROOT),
    )
    port = free_port()
    command = procfile_web().replace("0.0.0.0", "127.0.0.1") + " " + args.gunicorn_args
    print("web:", re.sub(r"\s+", " ", command))
    process = start_web(port, env, args.gunicorn_args)
    try:
        asyncio.run(run(args, port, psutil.Process(process.pid), user_token(SECRET, user),
                        ids, client))  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            process.kill()
        client.delete(*[stream_key(i) for i in ids])
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
