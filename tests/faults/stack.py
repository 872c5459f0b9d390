"""What a fault scenario runs against: a web app, workers (in-process or real processes), a reaper.

Everything is built from one `Settings`, as production builds it from the environment; a worker
process gets that configuration back as environment variables (`worker_env`), and the stack
checks the round trip through `Settings.from_env` so the two can never drift apart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from models import Fragment, Message, make_engine, make_sessionmaker, transaction
from orchestrator.runs import reaper
from orchestrator.runs.reaper import ReapReport
from orchestrator.settings import Settings
from tests.conftest import Api, wait_for

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
TERMINAL = ("COMPLETE", "FAILED", "CANCELLED")


def procfile_pool() -> str:
    """The pool of the Procfile's `worker:` line: what fault scenarios run, as production does."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            found = re.search(r"--pool[ =](\S+)", line)
            assert found, f"the Procfile's worker line names no --pool: {line}"
            return found.group(1)
    raise AssertionError("the Procfile has no worker: line")


PROCFILE_POOL = procfile_pool()

# Process groups of the worker processes started by the current scenario.
SPAWNED_GROUPS: set[int] = set()

# Settings a worker process must share with the test; everything else may keep its default.
SHARED_FIELDS = (
    "database_url",
    "redis_url",
    "auth_secret",
    "providers",
    "llm_read_timeout",
    "agent_max_steps",
    "sandbox_root",
    "sandbox_isolation",
    "sandbox_templates",
    "preview_check",
    "public_url",
    "queue_name",
    "heartbeat_interval",
    "stale_after",
    "pending_grace",
    "max_run_attempts",
    "worker_metrics_port",
    "task_events",
    "log_format",
)


def worker_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    """The environment a `celery worker` needs to run with `settings` (see Settings.from_env)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "AUTH_SECRET": settings.auth_secret,
        "QUEUE_NAME": settings.queue_name,
        "SANDBOX": settings.sandbox,
        "SANDBOX_ISOLATION": settings.sandbox_isolation,
        "SANDBOX_TEMPLATES": settings.sandbox_templates or "off",
        # The scenarios' workers check what their settings say (off, as the suite's): a worker
        # left to the environment's default would render every version in Chromium.
        "PREVIEW_CHECK": settings.preview_check,
        "PUBLIC_URL": settings.public_url,
        "AGENT_MAX_STEPS": str(settings.agent_max_steps),
        "LLM_READ_TIMEOUT": str(settings.llm_read_timeout),
        "HEARTBEAT_INTERVAL": str(settings.heartbeat_interval),
        "RUN_STALE_AFTER": str(settings.stale_after),
        "RUN_PENDING_GRACE": str(settings.pending_grace),
        "RUN_MAX_ATTEMPTS": str(settings.max_run_attempts),
        "WORKER_METRICS_PORT": str(settings.worker_metrics_port or 0),
        "CELERY_TASK_EVENTS": "1" if settings.task_events else "",
        "LOG_FORMAT": settings.log_format,
    }
    for provider in settings.providers:
        slot = provider.name.upper()
        env[f"LLM_{slot}_BASE_URL"] = provider.base_url
        env[f"LLM_{slot}_API_KEY"] = provider.api_key
        env[f"LLM_{slot}_MODEL"] = provider.model
    parsed = Settings.from_env(env)
    drift = [name for name in SHARED_FIELDS if getattr(parsed, name) != getattr(settings, name)]
    assert not drift, f"Settings.from_env does not read back {drift} from the worker environment"
    return env


class WorkerProcess:
    """A real `celery -A workers.celery_app worker` in its own process group."""

    def __init__(
        self,
        settings: Settings,
        data_dir: Path,
        *,
        pool: str = PROCFILE_POOL,
        heartbeat_events: bool = False,
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.pool = pool
        # Celery's worker-heartbeat events (every 2 s), which a scenario may wait for.
        self.heartbeat_events = heartbeat_events
        self.name = f"faults-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = data_dir / f"{self.name.split('@')[0]}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.known_pids: set[int] = set()

    def start(self) -> WorkerProcess:
        argv = [CELERY, "-A", "workers.celery_app", "worker", "--pool", self.pool]
        argv += [
            "--concurrency",
            "1",
            "--queues",
            self.settings.queue_name,
            "--hostname",
            self.name,
        ]
        argv += ["--without-gossip", "--without-mingle", "-l", "INFO"]
        if not self.heartbeat_events:
            argv.append("--without-heartbeat")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=worker_env(self.settings, self.data_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )
        SPAWNED_GROUPS.add(self.process.pid)
        return self

    def wait_ready(self, timeout: float = 30) -> float:
        """Seconds until the worker logs that it consumes; fails with its log if it dies first."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            self.known_pids |= set(self.group())
            if " ready." in self.log():
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()}")

    def group(self) -> list[int]:
        """Live (non-zombie) processes of the worker's process group."""
        if self.process is None:
            return []
        pgid = self.process.pid
        alive = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):  # gone meanwhile
                if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc.pid)
        return alive

    def kill(self) -> list[int]:
        """SIGKILL the whole process group at once, as the OOM killer or a lost host would."""
        assert self.process is not None
        victims = self.group()
        self.known_pids |= set(victims)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        _wait_gone(victims, 10)
        return victims

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL for anything left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        _wait_gone(list(self.known_pids), 5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _wait_gone(pids: list[int], timeout: float) -> None:
    """Until none of `pids` runs any more (a zombie waiting for init to reap it is gone); fails
    naming the ones still alive when the wait runs out."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        if not alive:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes still alive {timeout}s after SIGKILL: {alive}")
        time.sleep(0.02)


class ReaperLoop:
    """The beat's job, done by a thread: `reaper.reap` every `every` seconds until stopped.

    A sweep that fails is kept in `errors`; the scenario looks at them when the loop ends
    (`Stack.reaper`): none are allowed, except during an outage the scenario makes, after which
    a sweep must succeed again.
    """

    def __init__(self, services: Any, dispatch: Callable[[str, str], None], every: float) -> None:
        self.services = services
        self.dispatch = dispatch
        self.every = every
        self.totals = ReapReport()
        self.errors: list[str] = []
        self.clean_sweeps_since_error = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)

    def __enter__(self) -> ReaperLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                report = reaper.reap(self.services, self.dispatch)
            except Exception as exc:  # a sweep during an outage fails; the next one tries again
                self.errors.append(f"{type(exc).__name__}: {exc}"[:500])
                self.clean_sweeps_since_error = 0
                continue
            self.clean_sweeps_since_error += 1
            self.totals.requeued += report.requeued
            self.totals.resent += report.resent
            self.totals.failed += report.failed


@dataclass
class Stack:
    """One configuration, running: its Celery app, its web server, and how to look at the rows."""

    settings: Settings
    celery: Any
    base_url: str
    db: sessionmaker[Session]
    data_dir: Path
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def api(self) -> Api:
        return Api(self.base_url, f"user_{uuid.uuid4().hex[:10]}")

    def row(self, message_id: str) -> Message:
        with transaction(self.db) as session:
            message = session.get(Message, message_id)
            assert message is not None, f"message {message_id} does not exist"
            return message

    def fragments(self, message_id: str) -> list[Fragment]:
        with transaction(self.db) as session:
            return list(session.scalars(select(Fragment).where(Fragment.message_id == message_id)))

    def wait_row(
        self, message_id: str, check: Callable[[Message], bool], timeout: float, what: str
    ) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            message = self.row(message_id)
            if check(message):
                return message
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; "
                    f"message is {message.status} (attempts {message.attempts})"
                )
            time.sleep(0.05)

    def wait_terminal(self, message_id: str, timeout: float) -> Message:
        return self.wait_row(
            message_id, lambda m: m.status in TERMINAL, timeout, "a terminal state"
        )

    def worker_process(
        self, pool: str = PROCFILE_POOL, *, heartbeat_events: bool = False
    ) -> WorkerProcess:
        worker = WorkerProcess(
            self.settings, self.data_dir, pool=pool, heartbeat_events=heartbeat_events
        ).start()
        self._closers.append(worker.stop)
        return worker

    @contextlib.contextmanager
    def reaper(self, every: float = 0.25, *, outage: bool = False) -> Iterator[ReaperLoop]:
        """Sweeps every `every` seconds while the block runs. No sweep may fail, unless the
        block cuts a service (`outage`): then the sweeps after it must succeed again."""
        from orchestrator.wiring.services import build_run_services
        from workers.dispatch import enqueue_run

        services = build_run_services(self.settings)
        loop = ReaperLoop(services, lambda m, r: enqueue_run(self.celery, m, r), every)
        try:
            with loop:
                yield loop
                if outage:
                    wait_for(
                        lambda: loop.clean_sweeps_since_error >= 2,
                        10 + 4 * every,
                        f"the reaper to sweep cleanly after the outage (failed: {loop.errors})",
                    )
            assert outage or not loop.errors, f"reaper sweeps failed: {loop.errors}"
        finally:
            services.db.kw["bind"].dispose()

    def close(self) -> None:
        while self._closers:
            with contextlib.suppress(Exception):
                self._closers.pop()()


@contextlib.contextmanager
def running_stack(
    settings: Settings,
    data_dir: Path,
    *,
    in_process_worker: bool,
    check_db: str | None = None,
    web_db: str | None = None,
) -> Iterator[Stack]:
    """A web server (and optionally a threads-pool worker) for `settings`, on a queue of its own.

    `check_db` is where the test reads rows from, and `web_db` where the web app goes, when they
    differ from the workers' `settings.database_url` (each through a proxy of its own).
    """
    from celery.contrib.testing.worker import start_worker

    from web import create_app
    from workers.worker import create_worker_app

    settings = settings.model_copy(update=dict(queue_name=f"faults-{uuid.uuid4().hex[:8]}"))
    celery = create_worker_app(settings)
    app = create_app(
        settings.model_copy(update=dict(database_url=web_db or settings.database_url)),
        celery=celery,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    engine = make_engine(check_db or settings.database_url)
    stack = Stack(
        settings,
        celery,
        f"http://127.0.0.1:{http.server_port}",
        make_sessionmaker(engine),
        data_dir,
    )
    try:
        with contextlib.ExitStack() as exits:
            if in_process_worker:
                exits.enter_context(
                    start_worker(
                        celery,
                        pool="threads",
                        concurrency=4,
                        perform_ping_check=False,
                        shutdown_timeout=30,
                        loglevel="WARNING",
                    )
                )
            yield stack
            stack.close()
    finally:
        stack.close()
        http.shutdown()
        app.extensions["appforge"].engine.dispose()
        engine.dispose()
