"""Many machines: three worker processes with their own node names stand for three machines.

Three real `celery worker` processes (`-n w1@%h`, `w2@%h`, `w3@%h`, the Procfile's pool) consume
one queue of one Redis and one database, with the reaper sweeping as beat would. Under load (every
worker busy, more runs queued), w1's whole process group gets SIGKILL. Then: every run ends
terminal (none left PENDING/STREAMING), w2 and w3 keep taking work (runs queued after the kill
complete too), and the runs w1 held are re-run (or, with no attempt left, FAILED and refunded)
within RECOVERY_BOUND seconds of the kill: stale_after (2 s here; RUN_STALE_AFTER, 30 s by default)
+ a sweep + the re-run.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from models import Message, Role, transaction
from tests.fakes.llm_server import Reply
from tests.faults.conftest import FaultRecord, MakeStack, Providers
from tests.faults.stack import TERMINAL, WorkerProcess

pytestmark = pytest.mark.faults

RECOVERY_BOUND = 60.0
SUCCEEDED = re.compile(r"Task workers\.run_message\[([0-9a-f-]+)\] succeeded")
SLOW = Reply("Building it, piece by piece. " * 8, chunk_size=8, delay=0.1)  # ~3 s a run


def test_sigkill_one_of_three_workers_under_load(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "many-machines[3 workers, SIGKILL w1 under load]"
    stack = make_stack(in_process_worker=False, max_run_attempts=3)
    providers.primary.default = SLOW
    workers: list[WorkerProcess] = []
    for i in (1, 2, 3):
        worker = WorkerProcess(stack.settings, stack.data_dir)
        worker.name = f"w{i}@%h"
        worker.log_path = stack.data_dir / f"w{i}-{stack.settings.queue_name}.log"
        stack._closers.append(worker.stop)
        workers.append(worker.start())
    for worker in workers:
        worker.wait_ready()

    users = [stack.api() for _ in range(3)]
    sent: list[tuple[Any, str]] = []

    def send(n: int) -> None:
        for i in range(n):
            api = users[len(sent) % len(users)]
            answer = api.send(api.project(f"p{len(sent)}")["id"], f"Build app number {i}")
            assert answer.status_code == 201, answer.text
            sent.append((api, answer.json()["messageId"]))

    send(9)
    # Every worker holds a run (concurrency 1 each): three STREAMING at once.
    deadline = time.monotonic() + 30
    while _count(stack, "STREAMING", sent) < 3:
        assert time.monotonic() < deadline, "three runs never streamed at once"
        time.sleep(0.05)
    at_kill = [len(w.log()) for w in workers]
    victims = workers[0].kill()
    killed_at = time.monotonic()
    fault.inject(
        f"3 workers (w1, w2, w3) on one queue, 9 runs sent, 3 STREAMING; SIGKILL to "
        f"w1's process group ({len(victims)} processes)"
    )
    send(3)  # work queued after the kill: w2 and w3 must take it

    with stack.reaper() as reaper:
        finals = [stack.wait_terminal(mid, RECOVERY_BOUND) for _, mid in sent]
        recovered = time.monotonic() - killed_at
    statuses = [m.status for m in finals]
    assert all(s in TERMINAL for s in statuses)
    assert statuses.count("COMPLETE") == len(sent), [
        (m.id, m.status, m.error, m.attempts) for m in finals
    ]
    rerun = [m for m in finals if m.attempts > 1]
    assert len(rerun) >= 1, "the killed worker's run was not re-run"
    assert reaper.totals.requeued >= 1
    assert recovered < RECOVERY_BOUND
    # Both survivors worked after the kill; the dead one did not come back.
    # Tasks each worker finished after the kill (a re-sent task whose run was already
    # claimed elsewhere finishes at once, so tasks may outnumber runs).
    logs_after = [w.log()[at:] for w, at in zip(workers, at_kill, strict=True)]
    after = [len(set(SUCCEEDED.findall(text))) for text in logs_after]
    for worker, done in zip(workers[1:], after[1:], strict=True):
        assert worker.process is not None and worker.process.poll() is None, worker.log()[-2000:]
        assert done >= 1, worker.log()[-2000:]
    assert sum(after[1:]) >= len(sent) - 9 + len(rerun), after
    credits = sum(api.get("/api/me").json()["credits"] for api in users)
    assert credits == 3 * 5 - len(sent)
    fault.check(
        f"all {len(sent)} runs COMPLETE {recovered:.1f}s after the kill (bound "
        f"{RECOVERY_BOUND:.0f}s); {len(rerun)} re-run (attempts 2) after the reaper requeued "
        f"{reaper.totals.requeued}; tasks finished after the kill by w1/w2/w3: "
        f"{after[0]}/{after[1]}/{after[2]}, w2 and w3 alive; "
        f"one credit per run"
    )


def _count(stack: Any, status: str, sent: list[tuple[Any, str]]) -> int:
    ids = [mid for _, mid in sent]
    with transaction(stack.db) as session:
        rows = session.query(Message).filter(Message.id.in_(ids), Message.role == Role.ASSISTANT)
        return sum(1 for m in rows if m.status == status)
