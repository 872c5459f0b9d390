"""The database unreachable for a few seconds (DESIGN sections 4 and 9).

PostgreSQL: the web app and the workers each reach 127.0.0.1:5432 through a TCP proxy of their
own. The workers' proxy is cut first (a prompt accepted then cannot be claimed), then the web's
(POSTs answer 503 and store nothing); both come back after OUTAGE seconds.
SQLite: another connection holds `BEGIN EXCLUSIVE` for OUTAGE seconds; writers wait on the lock.

On PostgreSQL the POSTs sent while the web's database is away answer 503 and store nothing; on
SQLite they wait on the lock and are accepted. Workers (and the reaper) retry, nothing is lost:
every run ends terminal within BOUND seconds of the database coming back, and a new prompt works.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import Api
from tests.fakes.llm_server import Reply
from tests.fakes.tcp_proxy import TcpProxy
from tests.faults.conftest import FaultDatabase, FaultRecord, MakeStack, Providers
from tests.faults.stack import Stack

pytestmark = pytest.mark.faults

OUTAGE = 3.0
BOUND = 30.0  # stale_after 2 s, Celery's retry backoff (1, 2, 4 s...), then a re-run of ~1 s
# Past BOUND: a run whose claim failed must be retried by its worker, not re-sent by the reaper.
PENDING_GRACE = 120.0
SLOW = Reply("Streaming while the database goes away. " * 6, chunk_size=6, delay=0.1)  # ~4 s


class Outage:
    """One way of taking the database away; `stack` is built to go through it."""

    stack: Stack
    describe: str
    # What the POSTs sent while the web app's database is away must answer.
    during_codes: tuple[int, ...]

    def workers_down(self) -> None: ...

    def web_down(self) -> None: ...

    def restore(self) -> None: ...


class ProxiedPostgres(Outage):
    def __init__(self, database: FaultDatabase, make_stack: MakeStack) -> None:
        self.exits = contextlib.ExitStack()
        self.workers = self.exits.enter_context(TcpProxy(*database.address))
        self.web = self.exits.enter_context(TcpProxy(*database.address))
        self.stack = make_stack(
            database_url=database.through(self.workers.port),
            web_db=database.through(self.web.port),
            check_db=database.url,
            pending_grace=PENDING_GRACE,
        )
        self.describe = "PostgreSQL behind TCP proxies: every connection reset, new ones refused"
        self.during_codes = (503, 503)

    def workers_down(self) -> None:
        self.workers.cut()

    def web_down(self) -> None:
        self.web.cut()

    def restore(self) -> None:
        self.workers.resume()
        self.web.resume()


class LockedSqlite(Outage):
    def __init__(self, database: FaultDatabase, make_stack: MakeStack) -> None:
        self.path = make_url(database.url).database
        self.stack = make_stack(pending_grace=PENDING_GRACE)
        self.holder: sqlite3.Connection | None = None
        self.describe = "SQLite locked by another connection holding BEGIN EXCLUSIVE"
        self.during_codes = (201, 201)

    def workers_down(self) -> None:
        self.holder = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        self.holder.execute("BEGIN EXCLUSIVE")

    def restore(self) -> None:
        assert self.holder is not None
        self.holder.execute("ROLLBACK")
        self.holder.close()


@pytest.fixture
def outage(fault_database: FaultDatabase, make_stack: MakeStack) -> Iterator[Outage]:
    kind = ProxiedPostgres if fault_database.dialect == "postgresql" else LockedSqlite
    chosen = kind(fault_database, make_stack)
    yield chosen
    if isinstance(chosen, ProxiedPostgres):
        chosen.exits.close()


def in_background(call: Callable[[], Any]) -> Callable[[], Any]:
    """Start `call` now; the returned function waits for its result."""
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(value=call()), daemon=True)
    thread.start()
    return lambda: (thread.join(BOUND), box["value"])[1]


def test_database_unreachable_for_a_few_seconds(
    outage: Outage, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "database-outage"
    stack = outage.stack
    providers.primary.script(SLOW)
    api = stack.api()
    projects = [api.project(f"P{i}")["id"] for i in range(5)]

    running = api.send(projects[0], "The run that streams through the outage")
    assert running.status_code == 201, running.text
    running_id = running.json()["messageId"]
    stack.wait_row(
        running_id, lambda m: m.status == "STREAMING" and m.content != "", 20, "streaming"
    )

    with stack.reaper(outage=True) as reaper:
        down_at = time.monotonic()
        outage.workers_down()
        # Accepted by the web app while the workers cannot reach the database (or waits on it).
        claimed_late = in_background(
            lambda: api.send(projects[1], "Sent as the workers lose the DB")
        )
        time.sleep(0.5)
        outage.web_down()
        during = [
            in_background(lambda p=p: api.send(p, "Sent while the DB is down"))
            for p in projects[2:4]
        ]
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        outage.restore()
        back_at = time.monotonic()
        answers = [claimed_late(), *[wait() for wait in during]]
        codes = [a.status_code for a in answers]
        fault.inject(
            f"{outage.describe} for {back_at - down_at:.1f}s while a run STREAMED; "
            f"{len(answers)} POSTs during the outage"
        )

        # Sent before the web lost the database, the first is accepted; the others meet an
        # unreachable database (503) on PostgreSQL, and on SQLite wait on the lock (busy_timeout
        # 30 s, longer than the outage) and are accepted once it is released.
        assert codes == [201, *outage.during_codes], [a.text for a in answers]
        for project, answer in zip(projects[1:4], answers, strict=True):
            if answer.status_code == 503:
                assert _messages(api, project) == [], "a 503 must store nothing"
                assert answer.json()["error"], answer.text
        accepted = [a.json()["messageId"] for a in answers if a.status_code == 201]
        finals = {m: stack.wait_terminal(m, BOUND) for m in [running_id, *accepted]}
        settled = time.monotonic() - back_at
        after = _send_when_up(api, projects[4])
        assert stack.wait_terminal(after, BOUND).status == "COMPLETE"

    for row in finals.values():
        assert row.status in ("COMPLETE", "FAILED"), (row.id, row.status)
        if row.status == "FAILED":
            assert row.error and row.credit_refunded
    summary = ", ".join(f"{r.status}/attempts {r.attempts}" for r in finals.values())
    fault.check(
        f"POSTs answered {codes} (503 stored nothing); runs ended [{summary}] {settled:.1f}s after "
        f"the database came back (bound {BOUND:.0f}s), reaper {reaper.totals.as_dict()} with "
        f"{len(reaper.errors)} failed sweeps during the outage; a new prompt COMPLETE"
    )


def _messages(api: Api, project: str) -> list[Any]:
    listed = api.get("/api/messages", params={"projectId": project})
    assert listed.status_code == 200, listed.text
    return list(listed.json())


def _send_when_up(api: Api, project: str) -> str:
    """A new prompt once the database is back; DESIGN allows one 503 while pools reconnect."""
    for _ in range(2):
        answer = api.send(project, "A new prompt once the database is back")
        if answer.status_code == 201:
            return str(answer.json()["messageId"])
        assert answer.status_code == 503, answer.text
    raise AssertionError("the API still answers 503 after the database came back")
