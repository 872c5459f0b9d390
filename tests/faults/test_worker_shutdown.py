"""A worker told to stop with SIGTERM mid-run, as a container platform does (README, Operations).

SIGTERM starts Celery's warm shutdown: the worker takes no new task and waits for the runs it
holds to finish, with no time limit of its own. `worker_soft_shutdown_timeout` plays no part: it
bounds only a cold shutdown (SIGQUIT). So a run that streams for longer than that timeout after
the SIGTERM still ends COMPLETE in its first attempt, the worker then exits by itself, and a run
queued behind it stays queued for the next worker (no reaper runs here: nothing re-sends it).
"""

from __future__ import annotations

import signal
import time

import pytest

import celeryconfig
from tests.fakes.llm_server import Reply
from tests.faults.conftest import FaultRecord, MakeStack, Providers
from tests.faults.stack import PROCFILE_POOL

pytestmark = pytest.mark.faults

SOFT_TIMEOUT = float(celeryconfig.worker_soft_shutdown_timeout)
# Text that takes SOFT_TIMEOUT + 4 s to stream: 4 characters every 0.1 s.
CHUNKS = int((SOFT_TIMEOUT + 4) / 0.1)
SLOW = Reply("word" * CHUNKS, chunk_size=4, delay=0.1)
BOUND = SOFT_TIMEOUT + 30  # from the SIGTERM to the run terminal and the worker gone


def test_sigterm_lets_the_running_run_finish_and_takes_no_new_one(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "worker-sigterm"
    stack = make_stack(in_process_worker=False)
    worker = stack.worker_process()  # the Procfile's pool
    worker.wait_ready()
    providers.primary.script(SLOW)
    api = stack.api()
    running = api.send(api.project("P0")["id"], "The run under way at the SIGTERM")
    queued = api.send(api.project("P1")["id"], "The run queued behind it")
    assert running.status_code == queued.status_code == 201
    running_id, queued_id = running.json()["messageId"], queued.json()["messageId"]
    stack.wait_row(running_id, lambda m: m.status == "STREAMING" and m.content != "", 20, "text")
    assert worker.process is not None

    worker.process.send_signal(signal.SIGTERM)  # to the main process only, as `docker stop`
    signalled = time.monotonic()
    final = stack.wait_terminal(running_id, BOUND)
    finished_after = time.monotonic() - signalled
    try:
        code = worker.process.wait(timeout=max(1.0, BOUND - finished_after))
    except Exception as exc:
        raise AssertionError(f"the worker did not exit after its run:\n{worker.log()}") from exc
    fault.inject(
        f"SIGTERM to a {PROCFILE_POOL}-pool worker's main process while its run streamed "
        f"~{SOFT_TIMEOUT + 4:.0f}s of text (worker_soft_shutdown_timeout {SOFT_TIMEOUT:.0f}s), "
        "one run queued behind it"
    )

    assert (final.status, final.attempts) == ("COMPLETE", 1), (final.status, final.error)
    assert final.content == SLOW.text  # streamed to its end, not cut at the soft timeout
    assert len(stack.fragments(running_id)) == 0  # it only talked: no file, no fragment
    assert code == 0, worker.log()
    assert "Warm shutdown" in worker.log()
    left = stack.row(queued_id)
    assert (left.status, left.attempts) == ("PENDING", 0)  # not taken by the stopping worker

    stack.worker_process().wait_ready()  # the next worker finds it in the queue
    assert stack.wait_terminal(queued_id, 30).status == "COMPLETE"
    fault.check(
        f"the run ended COMPLETE in attempt 1 {finished_after:.1f}s after the SIGTERM, its text "
        f"whole; the worker then exited 0 (warm shutdown); the queued run stayed PENDING until "
        "a new worker took it from the queue and completed it"
    )
