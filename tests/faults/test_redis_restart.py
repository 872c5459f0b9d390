"""Redis restarted during a run and during POSTs (DESIGN sections 4 and 9).

A Redis of the scenario's own (never the machine's 127.0.0.1:6379), with no persistence, so a
restart loses the queue, the unacknowledged run and every event stream, as a crashed Redis would.
A real worker process runs a slow run and has a second run queued behind it. While Redis is down,
POSTs answer 503 (nothing stored, no credit spent). Afterwards every run ends terminal
within BOUND seconds, and a new prompt works.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from models import Message
from orchestrator.wiring.bundled_redis import BundledRedis
from tests.fakes.llm_server import Reply, ToolCall
from tests.faults.conftest import FaultRecord, MakeStack, Providers
from tests.faults.stack import TERMINAL

pytestmark = pytest.mark.faults

OUTAGE = 3.0  # longer than stale_after (2 s): heartbeats must not depend on Redis
BOUND = 40.0  # from Redis being back to every run terminal: pending_grace 3 s + re-runs
SLOW = Reply("Streaming through the outage. " * 8, chunk_size=6, delay=0.1)  # ~4 s


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[BundledRedis]:
    with BundledRedis(tmp_path / "redis") as server:
        yield server


def restart(server: BundledRedis, outage: float, during: object) -> float:
    """Stop the server, call `during()` while it is down, start it again on the same port."""
    server.stop()
    down_at = time.monotonic()
    during()  # type: ignore[operator]
    time.sleep(max(0.0, outage - (time.monotonic() - down_at)))
    server.start()
    return time.monotonic() - down_at


def test_redis_restart_during_a_run_and_during_posts(
    own_redis: BundledRedis, make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "redis-restart"
    stack = make_stack(in_process_worker=False, redis_url=own_redis.url)
    worker = stack.worker_process()
    worker.wait_ready()
    providers.primary.script(SLOW)
    api = stack.api()
    projects = [api.project(f"P{i}")["id"] for i in range(5)]

    running = api.send(projects[0], "The run that streams through the outage")
    queued = api.send(projects[1], "The run queued behind it")
    assert running.status_code == queued.status_code == 201
    running_id, queued_id = running.json()["messageId"], queued.json()["messageId"]
    stack.wait_row(
        running_id, lambda m: m.status == "STREAMING" and m.content != "", 20, "streaming"
    )
    assert stack.row(queued_id).status == "PENDING"  # the worker's one slot is busy

    during_outage = []

    def post_while_down() -> None:
        for project in projects[2:4]:
            during_outage.append((project, api.send(project, "Posted while Redis is down")))

    with stack.reaper(outage=True) as reaper:
        outage = restart(own_redis, OUTAGE, post_while_down)
        back_at = time.monotonic()
        codes = [answer.status_code for _, answer in during_outage]
        fault.inject(
            f"Redis (own, port {own_redis.port}, no persistence) stopped for {outage:.1f}s while "
            f"one run STREAMED and one waited in the queue; {len(codes)} POSTs during the outage"
        )
        # Nothing can be queued while Redis is down: each POST is undone and answers 503.
        assert codes == [503, 503], [answer.text for _, answer in during_outage]
        for project, answer in during_outage:
            assert answer.json()["error"], answer.text  # a sentence, not a stack trace
            listed = api.get("/api/messages", params={"projectId": project}).json()
            assert listed == [], listed  # nothing half-made
        accepted = [a.json()["messageId"] for _, a in during_outage if a.status_code == 201]
        finals = {
            mid: stack.wait_terminal(mid, BOUND).status
            for mid in [running_id, queued_id, *accepted]
        }
        settled = time.monotonic() - back_at
        after = api.send(projects[4], "A new prompt once Redis is back")
        assert after.status_code == 201, after.text
        assert stack.wait_terminal(after.json()["messageId"], BOUND).status == "COMPLETE"

    prompts = [*finals, after.json()["messageId"]]
    spent = len(prompts) - sum(stack.row(m).credit_refunded for m in prompts)
    assert api.get("/api/me").json()["credits"] == 5 - spent  # 503s spent nothing
    assert all(status in TERMINAL for status in finals.values())
    assert finals[queued_id] == "COMPLETE"  # the lost queued run was re-sent by the reaper
    running_row = stack.row(running_id)
    assert running_row.status in ("COMPLETE", "FAILED")
    fault.check(
        f"POSTs during the outage answered {codes} with nothing half-made for a 503; "
        f"the streaming run ended {running_row.status} (attempts {running_row.attempts}), "
        f"the lost queued run {finals[queued_id]} after the reaper re-sent it "
        f"(reaper: {reaper.totals.as_dict()}); all terminal {settled:.1f}s after Redis was back "
        f"(bound {BOUND:.0f}s); a new prompt COMPLETE"
    )


def test_a_run_in_a_long_command_keeps_its_lease_while_redis_is_down(
    own_redis: BundledRedis, make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "redis-restart[run inside a sandbox command]"
    stack = make_stack(in_process_worker=False, redis_url=own_redis.url)
    stack.worker_process().wait_ready()
    command = ToolCall("run_command", {"command": "sleep 5"})
    providers.primary.script(Reply("Installing.", tool_calls=[command]), Reply("Installed."))
    api = stack.api()
    sent = api.send(api.project()["id"], "A run busy in a sandbox command through the outage")
    assert sent.status_code == 201
    message_id = sent.json()["messageId"]
    stack.wait_row(message_id, in_command, 20, "the sandbox command to start")
    with stack.reaper(outage=True) as reaper:
        outage = restart(own_redis, OUTAGE, lambda: None)
        final = stack.wait_terminal(message_id, BOUND)
    fault.inject(
        f"Redis stopped for {outage:.1f}s (stale_after {stack.settings.stale_after:.0f}s) while "
        "the run's only activity was a 5 s sandbox command (no text, so no flush heartbeats)"
    )
    fault.check(
        f"ended {final.status}, attempts {final.attempts}, reaper {reaper.totals.as_dict()}, "
        f"model calls {len(providers.primary.requests)}"
    )
    assert final.status == "COMPLETE"
    assert reaper.totals.requeued == 0 and final.attempts == 1  # the live run kept its lease
    assert len(providers.primary.requests) == 2  # the command's step and the reply after it


def in_command(message: Message) -> bool:
    return any(call["result"] is None for call in message.tool_calls or [])
