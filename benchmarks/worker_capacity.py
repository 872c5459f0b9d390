"""How many generations one worker machine runs at once (DESIGN section 14).

    .venv/bin/python -m benchmarks.worker_capacity [--runs 500] [--seconds 6] [--cancels 50]

Starts, each in its own process: a lean fake model (benchmarks/fast_llm.py: every reply is
`seconds * 30` text chunks at 30 a second, then one `write_file`, then "Done."), the Procfile's
`web:` line and its `worker:` line, both with their defaults (no WORKER_CONCURRENCY, no
WEB_WORKERS), on SQLite or DATABASE_URL (a fresh PostgreSQL schema) and REDIS_URL (else a bundled
Redis). Then, in the same run:

1. baseline: `--runs` streams of the fake model read directly by a plain asyncio client (what the
   machine can do at all: chunk latency and makespan without the app);
2. one run alone, from POST /api/messages to its SSE `done`;
3. `--runs` runs at once, every one with its SSE client connected; `--cancels` of them are
   cancelled while they stream. Chunk latency is fake model write -> SSE client read (each chunk
   carries its wall-clock time). A cancel takes effect when the model's connection is closed and
   the SSE client got `done`: the later of the two, from the DELETE.

Prints peak concurrent streams seen by the model, makespan against one run alone, chunk -> client
p50/p99, cancel p50/p99, worker CPU (seconds and % of one core) and peak RSS, peak database and
Redis connections of the worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.streams import free_port, percentile
from orchestrator.settings import normalize_database_url
from orchestrator.wiring.bundled_redis import BundledRedis

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-secret-benchmark-secret-0123"
STAMP = re.compile(rb"t(\d{16}) ")


def procfile(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip()
    raise RuntimeError(f"Procfile has no {name}: line")


def spawn(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- HTTP, by hand: the client must cost less than what it measures -------------------------


async def request(
    port: int, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.0\r\nHost: bench\r\nContent-Length: {len(data)}\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    writer.write(head.encode() + b"\r\n" + data)
    raw = await reader.read()
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _headers, _, payload = rest.partition(b"\r\n\r\n")
    status = int(status_line.split()[1])
    try:
        return status, json.loads(payload) if payload else None
    except json.JSONDecodeError:
        return status, payload


@dataclass
class Client:
    """One SSE client of one run."""

    message_id: str = ""
    latencies: list[float] = field(default_factory=list)
    first_delta: asyncio.Event = field(default_factory=asyncio.Event)
    done_at: float | None = None
    posted_at: float = 0.0
    first_at: float | None = None
    status: str | None = None
    error: str | None = None


async def follow(port: int, token: str, client: Client) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        client.error = type(exc).__name__
        return
    writer.write(
        f"GET /api/messages/{client.message_id}/events HTTP/1.0\r\nHost: bench\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    event = b""
    try:
        while line := await reader.readline():
            if line.startswith(b"event:"):
                event = line[6:].strip()
            elif line.startswith(b"data:") and event == b"delta":
                now = time.time_ns() // 1000
                for stamp in STAMP.findall(line):
                    client.latencies.append((now - int(stamp)) / 1000)
                if client.first_at is None:
                    client.first_at = time.time()
                client.first_delta.set()
            elif line.startswith(b"data:") and event == b"done":
                client.done_at = time.time()
                client.status = json.loads(line[5:])["status"]
                break
    except (ConnectionError, OSError) as exc:
        client.error = type(exc).__name__
    finally:
        writer.close()


# -- the baseline: the fake model's streams read directly ----------------------------------


async def baseline_stream(port: int, label: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"run {label}"}]}
    ).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    while line := await reader.readline():
        if line.startswith(b"data: [DONE]"):
            break
        if line.startswith(b"data:"):
            now = time.time_ns() // 1000
            for stamp in STAMP.findall(line):
                latencies.append((now - int(stamp)) / 1000)
    writer.close()


async def baseline(port: int, runs: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    started = time.monotonic()
    await asyncio.gather(*(baseline_stream(port, i, latencies) for i in range(runs)))
    return time.monotonic() - started, latencies


# -- the figures of the worker process -------------------------------------------------------


@dataclass
class Sampler:
    """The worker processes' figures: CPU, RSS and connections summed over them."""

    processes: list[psutil.Process]
    ports: dict[str, int]
    rss_peak: float = 0.0
    connections_peak: dict[str, int] = field(default_factory=dict)
    threads_peak: int = 0

    def cpu(self) -> float:
        total = 0.0
        for process in self.processes:
            times = process.cpu_times()
            total += times.user + times.system
        return total

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(0.5)

    def sample(self) -> None:
        try:
            rss = sum(p.memory_info().rss for p in self.processes) / 2**20
            self.rss_peak = max(self.rss_peak, rss)
            self.threads_peak = max(self.threads_peak, sum(p.num_threads() for p in self.processes))
            connections = [c for p in self.processes for c in p.net_connections(kind="tcp")]
        except psutil.Error:
            return
        for name, port in self.ports.items():
            count = sum(
                1
                for c in connections
                if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
            )
            self.connections_peak[name] = max(self.connections_peak.get(name, 0), count)


async def llm_stats(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stats HTTP/1.1\r\nHost: b\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    body = await reader.readexactly(length)
    writer.close()
    stats: dict[str, Any] = json.loads(body)
    return stats


async def llm_reset(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /reset HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


# -- the app under load ----------------------------------------------------------------------


async def one_run(port: int, token: str, project: str, label: int) -> Client:
    status, sent = await request(
        port,
        "POST",
        "/api/messages",
        token,
        {"message": f"Build run {label}", "projectId": project},
    )
    assert status == 201, (status, sent)
    client = Client(message_id=sent["messageId"])
    await follow(port, token, client)
    return client


class StreamProbe:
    """Reads a sample of the runs' Redis Streams directly: chunk -> Redis, without the web hop."""

    def __init__(self, redis_url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.cursors: dict[str, str] = {}
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def add(self, message_id: str) -> None:
        self.cursors.setdefault(f"run:{message_id}:events", "0-0")

    def _read(self) -> None:
        while not self.stop.is_set():
            if not self.cursors:
                time.sleep(0.05)
                continue
            reply: Any = self.client.xread(dict(self.cursors), block=100)
            now = time.time_ns() // 1000
            for key, entries in reply or []:
                for entry_id, fields in entries:
                    self.cursors[key.decode()] = entry_id.decode()
                    for stamp in STAMP.findall(fields[b"data"]):
                        self.latencies.append((now - int(stamp)) / 1000)


async def load(
    args: argparse.Namespace,
    web: int,
    llm: int,
    token: str,
    projects: list[str],
    probe: StreamProbe,
    start_worker: Callable[[], Awaitable[float]] | None,
) -> dict[str, Any]:
    clients: list[Client] = []
    by_index: dict[int, Client] = {}
    cancel_at: dict[int, float] = {}
    delete_sent: dict[int, float] = {}
    chosen = set(range(0, args.runs, max(1, args.runs // max(1, args.cancels)))[: args.cancels])
    tasks: list[asyncio.Task[None]] = []
    posting = asyncio.Semaphore(32)
    posted_all = asyncio.Event()
    waiting = [args.runs]

    async def run(i: int) -> None:
        async with posting:
            status, sent = await request(
                web,
                "POST",
                "/api/messages",
                token,
                {"message": f"Build run {i}", "projectId": projects[i]},
            )
        if status != 201:
            client = Client(error=f"POST {status}")
            clients.append(client)
            _posted()
            return
        client = Client(message_id=sent["messageId"])
        client.posted_at = time.time()
        clients.append(client)
        by_index[i] = client
        if i % 10 == 0:
            probe.add(client.message_id)
        follower = asyncio.create_task(follow(web, token, client))
        _posted()
        if i in chosen:
            await client.first_delta.wait()
            await asyncio.sleep(random.uniform(0.5, max(0.6, args.seconds - 1.0)))
            if client.done_at is None:
                delete_sent[i] = time.time()
                cancel_at[i] = 0.0
                status, _ = await request(
                    web, "DELETE", f"/api/messages/{client.message_id}", token
                )
                cancel_at[i] = float(status)
        await follower

    def _posted() -> None:
        waiting[0] -= 1
        if not waiting[0]:
            posted_all.set()

    started = time.time()
    for i in range(args.runs):
        tasks.append(asyncio.create_task(run(i)))
    if start_worker is not None:
        # Every prompt accepted and its SSE client connected, then the worker starts: what the
        # worker can hold, not how fast the web process accepts prompts.
        await posted_all.wait()
        await asyncio.sleep(1.0)
        started = await start_worker()
    await asyncio.gather(*tasks)
    makespan = max((c.done_at or time.time()) for c in clients) - started
    posted = max(c.posted_at for c in clients) - min(c.posted_at for c in clients)
    stats = await llm_stats(llm)
    return {
        "clients": clients,
        "by_index": by_index,
        "makespan": makespan,
        "posted": posted,
        "stats": stats,
        "delete_sent": delete_sent,
        "delete_status": cancel_at,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=6.0, help="text streamed per run")
    parser.add_argument("--cancels", type=int, default=50)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")
    parser.add_argument(
        "--concurrency", type=int, help="WORKER_CONCURRENCY (default: the Procfile's default)"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes started with the worker line"
    )
    parser.add_argument(
        "--live-posts",
        action="store_true",
        help="POST while the worker runs (default: all prompts queued first, then the worker)",
    )
    args = parser.parse_args()
    if args.live_posts and args.processes != 1:
        parser.error("--live-posts measures one worker process")
    asyncio.run(amain(args))


async def amain(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="capacity-"))
    os.chmod(scratch, 0o755)
    processes: list[subprocess.Popen[bytes]] = []
    bundled = None
    try:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            bundled = BundledRedis(scratch / "redis").start()
            redis_url = bundled.url
        database_url = normalize_database_url(
            args.database_url or f"sqlite:///{scratch / 'bench.db'}"
        )
        if database_url.startswith("postgresql"):
            import sqlalchemy

            schema = f"capacity_{uuid.uuid4().hex[:8]}"
            with sqlalchemy.create_engine(database_url).begin() as conn:
                conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
            sep = "&" if "?" in database_url else "?"
            database_url = f"{database_url}{sep}options=-csearch_path%3D{schema}"
        from models.migrate import upgrade

        upgrade(database_url)

        llm_port, web_port = free_port(), free_port()
        venv = ROOT / ".venv" / "bin"
        llm_proc = spawn(
            f"{sys.executable} -m benchmarks.fast_llm --port {llm_port} --seconds {args.seconds}",
            dict(os.environ, PYTHONPATH=str(ROOT)),
            scratch / "llm.log",
        )
        processes.append(llm_proc)
        wait_for(lambda: "listening" in (scratch / "llm.log").read_text(), 20, "the fake model")

        # 1. What the machine can do at all: the same streams, read by a plain asyncio client.
        base_makespan, base_latencies = await baseline(llm_port, args.runs)
        base_stats = await llm_stats(llm_port)
        await llm_reset(llm_port)

        queue = f"capacity-{uuid.uuid4().hex[:8]}"
        env = {
            "PATH": f"{venv}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DATA_DIR": str(scratch / "data"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "AUTH_SECRET": SECRET,
            "QUEUE_NAME": queue,
            "DEFAULT_CREDITS": str(10 * args.runs + 10),
            "SANDBOX_ISOLATION": "best-effort",  # write_file only; no command runs
            # A static app: each run is its text and one write_file, with no framework build.
            "SANDBOX_TEMPLATES": "off",
            "LLM_PRIMARY_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "LLM_PRIMARY_API_KEY": "bench",
            "LLM_PRIMARY_MODEL": "bench",
            "PORT": str(web_port),
            "PUBLIC_URL": f"http://127.0.0.1:{web_port}",
        }
        web_command = procfile("web").replace("0.0.0.0", "127.0.0.1") + " --log-level warning"
        web_command = web_command.replace("--access-logfile -", "")
        processes.append(spawn(web_command, env, scratch / "web.log"))
        worker_command = procfile("worker")
        if args.concurrency:
            env["WORKER_CONCURRENCY"] = str(args.concurrency)

        def worker_command_of(n: int) -> str:
            if args.processes == 1:
                return worker_command
            return f"{worker_command} --hostname capacity{n}@%h"

        worker = spawn(worker_command, env, scratch / "worker.log")
        processes.append(worker)
        wait_for(lambda: " ready." in (scratch / "worker.log").read_text(), 60, "the worker")
        wait_for(lambda: _port_open(web_port), 30, "the web process")
        await asyncio.sleep(1.0)

        from orchestrator.tokens import user_token

        token = user_token(SECRET, f"capacity-{uuid.uuid4().hex[:8]}")
        projects: list[str] = []
        for start in range(0, args.runs + 1, 50):
            made = await asyncio.gather(
                *(
                    request(web_port, "POST", "/api/projects", token, {"name": f"p{i}"})
                    for i in range(start, min(args.runs + 1, start + 50))
                )
            )
            projects += [body["id"] for status, body in made if status == 201]
        assert len(projects) == args.runs + 1, "could not create the projects"

        # 2. One run alone.
        alone_started = time.time()
        alone = await one_run(web_port, token, projects[-1], 999_999)
        assert alone.status == "COMPLETE", (alone.status, alone.error)
        alone_time = (alone.done_at or time.time()) - alone_started
        await llm_reset(llm_port)

        # 3. The load.
        probe = StreamProbe(redis_url)
        ports = {
            "redis": int(redis_url.rsplit(":", 1)[1].split("/")[0]),
            "db": _db_port(database_url),
        }
        held: dict[str, Any] = {}

        def measure(*workers: subprocess.Popen[bytes]) -> None:
            held["sampler"] = sampler = Sampler([psutil.Process(w.pid) for w in workers], ports)
            held["stop"] = stop = asyncio.Event()
            held["task"] = asyncio.create_task(sampler.run(stop))
            held["cpu"], held["wall"] = sampler.cpu(), time.monotonic()

        async def fresh_worker() -> float:
            fresh = []
            for n in range(args.processes):
                log = scratch / f"worker-{n}.log"
                fresh.append(spawn(worker_command_of(n), env, log))
                processes.append(fresh[-1])
            for n in range(args.processes):
                log = scratch / f"worker-{n}.log"
                await asyncio.to_thread(
                    wait_for, lambda log=log: " ready." in log.read_text(), 60, "worker"
                )
            measure(*fresh)
            return time.time()

        if args.live_posts:
            measure(worker)
        else:
            os.killpg(worker.pid, 15)  # warm shutdown: it holds no run now
            await asyncio.to_thread(worker.wait, 30)
        result = await load(
            args, web_port, llm_port, token, projects, probe,
            None if args.live_posts else fresh_worker,
        )  # fmt: skip
        sampler = held["sampler"]
        cpu_used, wall = sampler.cpu() - held["cpu"], time.monotonic() - held["wall"]
        held["stop"].set()
        await held["task"]
        probe.stop.set()
        result["redis_latencies"] = probe.latencies

        report(args, database_url, base_makespan, base_latencies, base_stats, alone_time,
               result, sampler, cpu_used, wall)  # fmt: skip
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        if bundled is not None:
            bundled.stop()
        if args.keep:
            print(f"logs kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def _port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _db_port(url: str) -> int:
    if not url.startswith("postgresql"):
        return -1
    found = re.search(r"@[^/:]+:(\d+)/", url)
    return int(found.group(1)) if found else 5432


def report(args: argparse.Namespace, database_url: str, base_makespan: float,
           base_latencies: list[float], base_stats: dict[str, Any], alone_time: float,
           result: dict[str, Any], sampler: Sampler, cpu_used: float,
           wall: float) -> None:  # fmt: skip
    clients: list[Client] = result["clients"]
    stats = result["stats"]
    latencies = [x for c in clients for x in c.latencies]
    statuses: dict[str, int] = {}
    for c in clients:
        key = c.status or c.error or "no done"
        statuses[key] = statuses.get(key, 0) + 1
    cancels: list[float] = []
    to_done: list[float] = []
    missed = 0
    labels = sorted(result["delete_sent"])
    for i in labels:
        sent = result["delete_sent"][i]
        client = result["by_index"].get(i)
        cut = stats["cut"].get(str(i))
        if client is not None and client.done_at is not None and client.status == "CANCELLED":
            to_done.append((client.done_at - sent) * 1000)
        if client is None or client.done_at is None or cut is None:
            missed += 1
            continue
        cancels.append((max(cut, client.done_at) - sent) * 1000)
    machine = f"{psutil.cpu_count()} cores, shared with other work"
    db = database_url.split(":")[0]
    slots = f"WORKER_CONCURRENCY={args.concurrency}" if args.concurrency else "default slots"
    print(f"worker capacity: {args.runs} runs x {args.seconds:g} s of text at 30 chunks/s ({db}, "
          f"{machine}); {args.processes} worker process(es), {slots}")  # fmt: skip
    print(f"  baseline (fake model read directly): peak {base_stats['peak']} streams, makespan "
          f"{base_makespan:.1f} s, chunk p50 {_p(base_latencies, 0.5)} p99 "
          f"{_p(base_latencies, 0.99)} ms")  # fmt: skip
    print(f"  one run alone (POST -> done): {alone_time:.2f} s")
    print(f"  {args.runs} runs: peak {stats['peak']} streams open at the model, makespan "
          f"{result['makespan']:.1f} s from the worker's start = "
          f"{result['makespan'] / alone_time:.1f}x one run alone "
          f"(baseline: {base_makespan / args.seconds:.2f}x one stream's length)")  # fmt: skip
    mode = "while the worker ran" if args.live_posts else "all queued before the worker started"
    print(f"  endings: {statuses}; POSTs ({mode}) took {result['posted']:.1f} s")
    if args.live_posts:
        starts = [(c.first_at - c.posted_at) * 1000 for c in clients if c.first_at]
        print(f"  POST answered -> first chunk at the client: p50 {_p(starts, 0.5)} "
              f"p99 {_p(starts, 0.99)} ms")  # fmt: skip
    redis_side = result["redis_latencies"]
    print(f"  chunk -> Redis stream (a direct reader, every 10th run): p50 "
          f"{_p(redis_side, 0.5)} p99 {_p(redis_side, 0.99)} ms")  # fmt: skip
    print(f"  chunk -> SSE client: p50 {_p(latencies, 0.5)} p99 {_p(latencies, 0.99)} ms "
          f"({len(latencies)} chunks; baseline p99 {_p(base_latencies, 0.99)} ms)")  # fmt: skip
    print(f"  cancel (DELETE -> model closed and done): p50 {_p(cancels, 0.5)} "
          f"p99 {_p(cancels, 0.99)} ms ({len(cancels)} cancels; {missed} found the model's "
          f"stream over already)")  # fmt: skip
    print(f"  cancel (DELETE -> done at the SSE client, every cancel): p50 {_p(to_done, 0.5)} "
          f"p99 {_p(to_done, 0.99)} ms ({len(to_done)})")  # fmt: skip
    print(f"  worker: CPU {cpu_used:.1f} s over {wall:.1f} s ({100 * cpu_used / wall:.0f}% of "
          f"one core), peak RSS {sampler.rss_peak:.0f} MiB "
          f"({sampler.rss_peak / max(1, args.runs):.2f} MiB per run), "
          f"peak threads {sampler.threads_peak}")  # fmt: skip
    print(f"  worker connections (peak): Redis {sampler.connections_peak.get('redis', 0)}, "
          f"database {sampler.connections_peak.get('db', 0) if db.startswith('postgresql') else 'SQLite file'}")  # fmt: skip  # noqa: E501


def _p(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}" if values else "n/a"


if __name__ == "__main__":
    main()
