"""Races the fenced lifecycle must win (DESIGN sections 5, 8 and 9).

DELETE against a run's completion, two workers executing one run, and storms of POSTs on one
conversation. Each ends in exactly one of the allowed states, never a mix.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from models import transaction, utcnow
from orchestrator import accounts, send_prompt
from orchestrator.runs import lifecycle
from orchestrator.runs.runner import execute_run
from orchestrator.wiring.services import build_run_services
from tests.conftest import wait_for
from tests.fakes.llm_server import Reply, ToolCall
from tests.faults.conftest import FaultRecord, MakeStack, Providers
from tests.faults.stack import Stack

pytestmark = pytest.mark.faults

PAGE = "<!doctype html><h1>Race</h1>"
ROUNDS = 20
SPREAD = 1.5  # DELETEs spread over this many times a run's duration


def page_for(prompt: str) -> str:
    """Each run's own page: a run that changes nothing would make no version (DESIGN 12)."""
    return f"{PAGE}<p>{prompt}</p>"


def agent_script(request: dict[str, Any]) -> Reply:
    """Write a page, then finish once the tool result came back: two model calls per run."""
    if request["messages"][-1]["role"] == "tool":
        finish = ToolCall("finish", {"title": "Race", "summary": "Won or lost."})
        return Reply("Done.", tool_calls=[finish], chunk_size=12, delay=0.005)
    prompt = request["messages"][-1]["content"]
    page = ToolCall("write_file", {"path": "index.html", "content": page_for(prompt)})
    return Reply("Writing the page.", tool_calls=[page], chunk_size=12, delay=0.005)


def grant(stack: Stack, user_id: str, credits: int) -> None:
    with transaction(stack.db) as session:
        accounts.set_credits(session, user_id, credits, stack.settings.default_credits)


def test_delete_racing_completion_ends_in_one_state_never_a_mix(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "race[delete-vs-completion]"
    stack = make_stack()
    providers.primary.default = agent_script
    api = stack.api()
    project = api.project()["id"]
    api.get("/api/me")
    grant(stack, api.user_id, 100)

    # How long one run takes, so the DELETEs can be spread across its whole life.
    probe = api.send(project, "Probe how long a run takes")
    started = time.monotonic()
    api.wait_terminal(probe.json()["messageId"], 20)
    duration = time.monotonic() - started

    # From at once (the run cannot have finished: CANCELLED) to well after the probe's
    # duration (it has: COMPLETE), so both outcomes happen, and the races in between.
    outcomes = []
    for i in range(ROUNDS):
        delay = duration * SPREAD * i / (ROUNDS - 1)
        sent = api.send(project, f"Race number {i}")
        assert sent.status_code == 201, sent.text
        time.sleep(delay)
        deleted = api.delete(f"/api/messages/{sent.json()['messageId']}")
        assert deleted.status_code in (200, 409), deleted.text
        final = api.wait_terminal(sent.json()["messageId"], 20)
        outcomes.append((sent.json()["messageId"], deleted.status_code, final["status"], i))
    fault.inject(
        f"{ROUNDS} runs (write_file then finish, ~{duration * 1000:.0f} ms each), each DELETEd "
        f"after 0..{duration * SPREAD * 1000:.0f} ms"
    )

    # Let every worker thread finish what it was doing, then look for late writes.
    wait_for(lambda: not providers.primary.active, 10, "the model's connections to close")
    time.sleep(1.0)
    counts = {"CANCELLED": 0, "COMPLETE": 0}
    for message_id, code, status, i in outcomes:
        row = stack.row(message_id)
        fragments = stack.fragments(message_id)
        assert row.status == status, (message_id, status, row.status)  # terminal stays terminal
        if code == 200:
            assert status == "CANCELLED" and fragments == [], (message_id, status, fragments)
        else:
            assert status == "COMPLETE", (message_id, status)
            page = page_for(f"Race number {i}")
            assert len(fragments) == 1 and fragments[0].files == {"index.html": page}
        counts[status] += 1
    assert counts["CANCELLED"] and counts["COMPLETE"], f"one outcome never happened: {counts}"
    fault.check(
        f"DELETE 200 -> CANCELLED with no fragment ({counts['CANCELLED']}), DELETE 409 -> "
        f"COMPLETE with its one fragment ({counts['COMPLETE']}); no late write after 1 s idle"
    )


def test_two_workers_executing_one_run_call_the_model_once(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "race[two-workers-claim-one-run]"
    stack = make_stack(in_process_worker=False)
    api = stack.api()
    project = api.project()["id"]
    api.get("/api/me")
    grant(stack, api.user_id, 100)
    workers = [build_run_services(stack.settings) for _ in range(2)]  # as two processes would
    rounds = 10
    try:
        for i in range(rounds):
            accepted = send_prompt.send_prompt(
                stack.db,
                send_prompt.PromptRequest(
                    user_id=api.user_id, text=f"Claim race {i}", project_id=project
                ),
                default_credits=5,
                dispatch=lambda message_id, run_id: None,  # the test plays both deliveries
            )
            barrier = threading.Barrier(2)

            def deliver(services: Any, ids: Any = accepted, barrier: Any = barrier) -> str | None:
                barrier.wait()
                return execute_run(services, ids.assistant_message_id, ids.run_id)

            with ThreadPoolExecutor(max_workers=2) as pool:
                results = sorted(pool.map(deliver, workers), key=str)
            assert results == ["COMPLETE", None], results
            assert len(stack.fragments(accepted.assistant_message_id)) == 0
        assert len(providers.primary.requests) == rounds
    finally:
        for services in workers:
            services.db.kw["bind"].dispose()
    fault.inject(f"{rounds} runs each delivered to two workers at once (execute_run x2, barrier)")
    fault.check(f"each run: one worker COMPLETE, the other None; model called {rounds} times")


def test_post_storms_on_one_conversation_start_exactly_one_run_each(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "race[post-storm]"
    stack = make_stack()
    providers.primary.default = Reply("Still working on it. " * 5, chunk_size=8, delay=0.05)
    api = stack.api()
    project = api.project()["id"]
    api.get("/api/me")
    grant(stack, api.user_id, 100)
    storms, size = 3, 25
    winners = []
    with ThreadPoolExecutor(max_workers=size) as pool:
        for storm in range(storms):
            answers = list(
                pool.map(lambda i, s=storm: api.send(project, f"Storm {s} #{i}"), range(size))
            )
            codes = sorted(a.status_code for a in answers)
            assert codes.count(201) == 1 and set(codes) == {201, 409}, codes
            winner = next(a.json()["messageId"] for a in answers if a.status_code == 201)
            losers = {a.json()["messageId"] for a in answers if a.status_code == 409}
            assert losers == {winner}, losers
            winners.append(winner)
            if storm == 1:  # this one is cancelled while the next storm is already under way
                api.delete(f"/api/messages/{winner}")
            else:
                api.wait_terminal(winner, 20)
    finals = [stack.row(w).status for w in winners]
    assert finals == ["COMPLETE", "CANCELLED", "COMPLETE"], finals
    refunded = sum(stack.row(w).credit_refunded for w in winners)  # cancelled while PENDING
    assert api.get("/api/me").json()["credits"] == 100 - storms + refunded
    fault.inject(
        f"{storms} storms of {size} concurrent POSTs on one conversation; storm 2's run DELETEd"
    )
    fault.check(
        f"each storm: exactly one 201, every 409 names the winner; finals {finals}; "
        f"credits 100->{100 - storms + refunded}"
    )


def test_a_stale_attempt_that_is_still_alive_never_touches_the_rerun_workspace(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "race[stale-attempt-vs-rerun]"
    stack = make_stack(in_process_worker=False)
    api = stack.api()
    project = api.project()["id"]
    api.get("/api/me")
    accepted = send_prompt.send_prompt(
        stack.db,
        send_prompt.PromptRequest(
            user_id=api.user_id, text="Stale attempt race", project_id=project
        ),
        default_credits=5,
        dispatch=lambda message_id, run_id: None,
    )
    message_id, run_id = accepted.assistant_message_id, accepted.run_id
    new_page = ToolCall("write_file", {"path": "new.html", "content": PAGE})
    providers.primary.script(
        # attempt 1: busy in a command, heartbeating only every 2 s
        Reply("Old attempt.", tool_calls=[ToolCall("run_command", {"command": "sleep 6"})]),
        # attempt 2: writes, waits while attempt 1 notices it lost the run, reads back
        Reply(
            "New attempt.",
            tool_calls=[
                new_page,
                ToolCall("run_command", {"command": "sleep 3"}),
                ToolCall("read_file", {"path": "new.html"}),
            ],
        ),
        Reply("Done.", tool_calls=[ToolCall("finish", {"title": "Race", "summary": "Rerun."})]),
    )
    old = build_run_services(stack.settings.model_copy(update=dict(heartbeat_interval=2.0)))
    new = build_run_services(stack.settings)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(execute_run, old, message_id, run_id)
            stack.wait_row(message_id, lambda m: bool(m.tool_calls), 20, "attempt 1's command")
            # What the reaper does to a run whose heartbeat looked stale (its worker was slow).
            with transaction(stack.db) as session:
                assert lifecycle.requeue(session, message_id, utcnow() + timedelta(days=1))
            second = pool.submit(execute_run, new, message_id, run_id)
            results = (first.result(timeout=30), second.result(timeout=30))
    finally:
        for services in (old, new):
            services.db.kw["bind"].dispose()
    fault.inject(
        "attempt 1 alive in `sleep 6` (heartbeat every 2 s) when its run is requeued; attempt 2 "
        "of the same run id writes new.html, runs `sleep 3`, reads new.html back"
    )
    final = stack.row(message_id)
    read_back = next(c for c in final.tool_calls if c["name"] == "read_file")
    assert results == (None, "COMPLETE"), results
    assert read_back["result"].get("content") == PAGE, read_back
    fault.check(
        "attempt 1 stopped writing (None), attempt 2 COMPLETE; attempt 1's cleanup left attempt "
        "2's workspace alone (new.html read back intact)"
    )
