"""Fixtures of the fault-injection suite, and the report it prints.

Each scenario gets a `fault` record; it says what it injected and what it checked, and after the
scenario the record checks the promises of DESIGN section 9 on the rows it left (no run left
PENDING/STREAMING, the ledger balances, prompts paired, at most one fragment), that no sandbox
workspace and no process outlived it. Every record is printed as a `FAULT <name>: injected=...;
checked=...` line when its scenario ends and again in a summary at the end of the session, so the
lines reach CI logs without `-s`.

The suite has its own database (a schema of its own on PostgreSQL), sandbox root, fake LLM
servers on fixed ports (so a scenario can stop and restart them), and short reaper thresholds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from models import make_engine, make_sessionmaker, utcnow
from models.migrate import upgrade
from orchestrator.settings import ProviderConfig, Settings, normalize_database_url
from tests.conftest import SANDBOX_ROOTS, SECRET, unavailable
from tests.fakes.llm_server import FakeLLM, Reply
from tests.faults import invariants, stack
from tests.faults.stack import Stack, running_stack

SUMMARY: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: a fault-injection scenario (tests/faults)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARY:
        terminalreporter.section("fault injection: what was injected and checked")
        for line in SUMMARY:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    outcome = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
    item.stash.setdefault(_OUTCOMES, {})[report.when] = outcome
    return report


_OUTCOMES = pytest.StashKey[dict[str, str]]()


@dataclass
class FaultRecord:
    """What one scenario injected and checked; printed when the scenario ends."""

    name: str
    injected: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def inject(self, what: str) -> None:
        self.injected.append(what)

    def check(self, what: str) -> None:
        self.checked.append(what)

    def line(self) -> str:
        injected = ", ".join(self.injected) or "nothing"
        return f"FAULT {self.name}: injected={injected}; checked={'; '.join(self.checked)}"


@dataclass(frozen=True)
class FaultDatabase:
    url: str  # what the app uses
    dialect: str

    def through(self, port: int) -> str:
        """The same database reached through a proxy listening on 127.0.0.1:`port`."""
        return make_url(self.url).set(host="127.0.0.1", port=port).render_as_string(False)

    @property
    def address(self) -> tuple[str, int]:
        url = make_url(self.url)
        return url.host or "127.0.0.1", url.port or 5432


@pytest.fixture(scope="session")
def fault_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultDatabase]:
    raw = os.environ.get("DATABASE_URL")
    if not raw:
        url = f"sqlite:///{tmp_path_factory.mktemp('faults-db') / 'faults.db'}"
        upgrade(url)
        yield FaultDatabase(url, "sqlite")
        return
    base = normalize_database_url(raw)
    schema = f"faults_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(base, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    except sqlalchemy.exc.OperationalError as exc:
        unavailable(f"PostgreSQL at {raw} is unreachable: {exc}")
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    upgrade(url)
    yield FaultDatabase(url, "postgresql")
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(scope="session")
def fault_db(fault_database: FaultDatabase) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(fault_database.url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def fault_home() -> Iterator[Path]:
    """DATA_DIR of every worker: its sandbox root is `sandboxes/` below, as Settings derives it."""
    # Sandbox commands run as unprivileged uids, which must reach the workspace.
    home = Path(tempfile.mkdtemp(prefix="appforge-faults-"))
    home.chmod(0o755)
    SANDBOX_ROOTS.append(str(home / "sandboxes"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@dataclass
class Providers:
    """The provider chain's two fake OpenAI servers, on ports that survive a restart."""

    primary: FakeLLM
    fallback: FakeLLM

    def reset(self) -> None:
        for server in (self.primary, self.fallback):
            server.reset()
            server.default = Reply("Hello from the fake LLM.")

    def down(self) -> None:
        self.primary.stop()
        self.fallback.stop()

    def up(self) -> None:
        for server in (self.primary, self.fallback):
            if server._server is None:
                server.start()


@pytest.fixture(scope="session")
def providers() -> Iterator[Providers]:
    # Port 0, then the same port again whenever a scenario restarts them (FakeLLM.start).
    pair = Providers(FakeLLM().start(), FakeLLM().start())
    yield pair
    pair.down()


@pytest.fixture(scope="session")
def fault_settings(
    fault_database: FaultDatabase, redis_url: str, providers: Providers, fault_home: Path
) -> Settings:
    return Settings(
        database_url=fault_database.url,
        redis_url=redis_url,
        auth_secret=SECRET,
        default_credits=5,
        providers=(
            ProviderConfig("primary", providers.primary.base_url, "test-key", "primary-model"),
            ProviderConfig("fallback", providers.fallback.base_url, "test-key", "fallback-model"),
        ),
        llm_read_timeout=1.0,
        llm_backoff_cap=0.05,
        agent_max_steps=6,
        sandbox_root=str(fault_home / "sandboxes"),
        sandbox_isolation="best-effort",  # bubblewrap when it works, as in tests/conftest.py
        public_url="http://127.0.0.1:5000",
        queue_name=f"faults-{uuid.uuid4().hex[:8]}",
        # Short reaper thresholds, so a dead worker is noticed within seconds.
        heartbeat_interval=0.3,
        stale_after=2.0,
        pending_grace=3.0,
        max_run_attempts=3,
    )


MakeStack = Callable[..., Stack]


@pytest.fixture
def make_stack(fault_settings: Settings, fault_home: Path) -> Iterator[MakeStack]:
    """Starts stacks: `make_stack(in_process_worker=True, check_db=, web_db=, **settings)`."""
    with contextlib.ExitStack() as exits:

        def make(
            in_process_worker: bool = True,
            check_db: str | None = None,
            web_db: str | None = None,
            **overrides: Any,
        ) -> Stack:
            settings = fault_settings.model_copy(update=dict(**overrides))
            return exits.enter_context(
                running_stack(
                    settings,
                    fault_home,
                    in_process_worker=in_process_worker,
                    check_db=check_db,
                    web_db=web_db,
                )
            )

        yield make


@pytest.fixture(autouse=True)
def fault(
    request: pytest.FixtureRequest,
    fault_db: sessionmaker[Session],
    fault_settings: Settings,
    providers: Providers,
) -> Iterator[FaultRecord]:
    """The scenario's record; afterwards, the invariants every scenario must leave behind."""
    providers.up()
    providers.reset()
    record = FaultRecord(request.node.name.removeprefix("test_"))
    since = utcnow()
    before = invariants.child_pids()
    stack.SPAWNED_GROUPS.clear()
    yield record
    outcome = request.node.stash.get(_OUTCOMES, {}).get("call", "not run")
    outcome = {"failed": "FAILED", "xfailed": "xfailed: known bug, see its reason"}.get(
        outcome, outcome
    )
    sandbox_root = Path(fault_settings.sandbox_root)
    try:
        providers.up()
        record.checked.append(
            "after: "
            + ", ".join(
                [
                    *invariants.check_rows(fault_db, since),
                    invariants.check_sandbox_root(sandbox_root),
                    invariants.check_processes(before, stack.SPAWNED_GROUPS, sandbox_root),
                ]
            )
        )
    except AssertionError as exc:
        outcome = f"FAILED after the scenario: {exc}"
        raise
    finally:
        line = record.line()
        print(f"\n{line}")
        SUMMARY.append(f"{line} [{outcome}]")
