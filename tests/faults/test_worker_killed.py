"""A worker process killed with SIGKILL mid-run (DESIGN section 9).

A real `celery worker` (the Procfile's pool) runs the run; while the message is STREAMING its
whole process group gets SIGKILL: once while the model streams text, once while a sandbox
command runs. A fresh
worker starts and the reaper sweeps as the beat would. The message must reach a terminal state
within RECOVERY_BOUND seconds of the kill: re-run to COMPLETE, or, with no attempt left, FAILED
with its credit back; either way with at most one fragment and nothing of the dead attempt left.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from models import Message, utcnow
from orchestrator.sandboxes.local_users import UID_BASE
from tests.conftest import wait_for
from tests.fakes.llm_server import Reply, ToolCall
from tests.faults.conftest import FaultRecord, MakeStack, Providers
from tests.faults.stack import PROCFILE_POOL

pytestmark = pytest.mark.faults

# stale_after (2 s) + a reaper sweep (0.25 s) + a fresh worker's start (~3 s) + the re-run (~1 s),
# with room for a busy machine. DESIGN promises 120 s with the default settings.
RECOVERY_BOUND = 30.0
PAGE = "<!doctype html><h1>To-do</h1>"
SLOW_TEXT = "Writing the app, step by step. " * 20  # 600 chars, 4 every 0.1 s: ~15 s


def write_page(*more: ToolCall) -> Reply:
    page = ToolCall("write_file", {"path": "index.html", "content": PAGE})
    return Reply("Creating the page. ", tool_calls=[page, *more])


def finish() -> Reply:
    return Reply("Done.", tool_calls=[ToolCall("finish", {"title": "To-do", "summary": "A list."})])


def streaming_text(message: Message) -> bool:
    return message.status == "STREAMING" and len(message.content) > 40


def running_command(message: Message) -> bool:
    calls = message.tool_calls or []
    return message.status == "STREAMING" and any(
        c["name"] == "run_command" and c["result"] is None for c in calls
    )


def workspaces(sandbox_root: str, run_id: str) -> list[Path]:
    return list(Path(sandbox_root).glob(f"{run_id}.*"))


def sandbox_processes(sandbox_root: str) -> list[int]:
    """Commands running as a uid leased under our sandbox root."""
    slots = {int(p.stem) for p in (Path(sandbox_root) / ".uids").glob("*.lock")}
    return [
        p.pid
        for p in psutil.process_iter(["uids"])
        if p.info["uids"] and p.info["uids"].real - UID_BASE in slots
    ]


def test_sigkill_while_the_model_streams_then_a_fresh_worker_reruns_it(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "sigkill-mid-run[streaming, rerun]"
    stack = make_stack(in_process_worker=False, max_run_attempts=3)
    # Attempt 1 writes a file (so it owns a workspace), then streams slowly until it is killed.
    providers.primary.script(write_page(), Reply(SLOW_TEXT, chunk_size=4, delay=0.1))
    providers.primary.script(write_page(), finish())  # the re-run
    first = stack.worker_process()
    api = stack.api()
    sent = api.send(api.project()["id"])
    assert sent.status_code == 201, sent.text
    message_id, run_id = sent.json()["messageId"], sent.json()["runId"]

    before = stack.wait_row(message_id, streaming_text, 40, "text streaming")
    assert workspaces(stack.settings.sandbox_root, run_id), "attempt 1 should own a workspace"
    heartbeat_age = _age(stack.row(message_id))
    victims = first.kill()
    killed_at = time.monotonic()
    fault.inject(
        f"SIGKILL to the worker's process group ({len(victims)} processes, "
        f"{PROCFILE_POOL} pool) while "
        f"STREAMING, {len(before.content)} chars streamed, workspace open, "
        f"last heartbeat {heartbeat_age:.1f}s old; RUN_MAX_ATTEMPTS=3"
    )

    second = stack.worker_process()
    with stack.reaper() as reaper:
        final = stack.wait_terminal(message_id, RECOVERY_BOUND)
        recovered = time.monotonic() - killed_at
    second.wait_ready()

    assert final.status == "COMPLETE", (final.status, final.error, second.log()[-3000:])
    assert final.attempts == 2
    fragments = stack.fragments(message_id)
    assert len(fragments) == 1 and fragments[0].files == {"index.html": PAGE}
    assert api.get("/api/me").json()["credits"] == 4
    assert reaper.totals.requeued == 1
    fault.check(
        f"re-run to COMPLETE {recovered:.1f}s after the kill (bound {RECOVERY_BOUND:.0f}s), "
        f"attempts=2, exactly 1 fragment with the re-run's files, credits 5->4, "
        f"reaper requeued 1 run"
    )


def test_sigkill_while_a_sandbox_command_runs_with_no_attempt_left_fails_with_the_credit_back(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "sigkill-mid-run[sandbox command, attempts exhausted]"
    stack = make_stack(in_process_worker=False, max_run_attempts=1)
    providers.primary.script(write_page(ToolCall("run_command", {"command": "sleep 30"})))
    first = stack.worker_process()
    api = stack.api()
    sent = api.send(api.project()["id"])
    assert sent.status_code == 201, sent.text
    message_id, run_id = sent.json()["messageId"], sent.json()["runId"]

    before = stack.wait_row(message_id, running_command, 40, "a sandbox command running")
    assert workspaces(stack.settings.sandbox_root, run_id), "attempt 1 should own a workspace"
    commands = wait_for(lambda: sandbox_processes(stack.settings.sandbox_root), 10, "`sleep 30`")
    heartbeat_age = _age(stack.row(message_id))
    victims = first.kill()
    killed_at = time.monotonic()
    fault.inject(
        f"SIGKILL to the worker's process group ({len(victims)} processes, "
        f"{PROCFILE_POOL} pool) while "
        f"STREAMING with `sleep 30` running in the sandbox ({len(commands)} sandbox processes), "
        f"last heartbeat {heartbeat_age:.1f}s old; RUN_MAX_ATTEMPTS=1"
    )

    second = stack.worker_process()
    with stack.reaper() as reaper:
        final = stack.wait_terminal(message_id, RECOVERY_BOUND)
        recovered = time.monotonic() - killed_at
    second.wait_ready()

    assert final.status == "FAILED", (final.status, final.error)
    assert final.error and final.credit_refunded
    assert final.content.startswith(before.content)  # text that reached clients is kept
    assert stack.fragments(message_id) == []
    assert api.get("/api/me").json()["credits"] == 5
    assert len(providers.primary.requests) == 1  # no attempt left: the model never ran again
    assert reaper.totals.failed == 1
    fault.check(
        f"FAILED {recovered:.1f}s after the kill (bound {RECOVERY_BOUND:.0f}s), "
        f"error {final.error!r}, streamed text kept, credit back (5->4->5), 0 fragments, "
        f"model not called again, the dead attempt's workspace removed by the reaper"
    )


def _age(message: Message) -> float:
    assert message.heartbeat_at is not None
    return (utcnow() - message.heartbeat_at).total_seconds()
