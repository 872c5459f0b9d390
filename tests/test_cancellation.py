"""DELETE stops the work for real: queued, streaming, blocked on a silent model, running a tool."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from models import Fragment, transaction
from orchestrator import accounts
from orchestrator.settings import Settings
from orchestrator.streams.events import EventLog
from orchestrator.tokens import user_token
from tests.conftest import SECRET, Api, running_stack, sandbox_processes, wait_for
from tests.fakes.llm_server import Hang, Reply, ToolCall


def _streaming(api: Api, message_id: str, *, with_content: bool = False) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (m := api.message(message_id))["status"] == "STREAMING"
            and (m["content"] or not with_content)
            and m
        ),
        15,
        "the run to stream",
    )


def _cancel(api: Api, message_id: str) -> None:
    """DELETE the run, as a client does: it answers success, and the run ends CANCELLED."""
    answer = api.request("DELETE", f"/api/messages/{message_id}")
    assert (answer.status_code, answer.json()) == (200, {"success": True}), answer.text
    assert api.wait_terminal(message_id)["status"] == "CANCELLED"


def _events(redis_client: Any, message_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(kind, data) for _id, kind, data in EventLog(redis_client).read(message_id)]


def test_cancel_while_queued_refunds_and_the_run_never_starts(
    settings: Settings, llm: Any, redis_client: Any
) -> None:
    with running_stack(settings) as (client, execute):
        headers = {"Authorization": f"Bearer {user_token(SECRET, f'q-{time.time_ns()}')}"}
        project = client.post("/api/projects", json={"name": "q"}, headers=headers).get_json()
        sent = client.post(
            "/api/messages",
            json={"message": "Build it", "projectId": project["id"]},
            headers=headers,
        ).get_json()
        assert client.get("/api/me", headers=headers).get_json()["credits"] == 4
        answer = client.delete(f"/api/messages/{sent['messageId']}", headers=headers)
        assert (answer.status_code, answer.get_json()) == (200, {"success": True})
        message = client.get(f"/api/messages/{sent['messageId']}", headers=headers).get_json()
        assert message["status"] == "CANCELLED"
        assert client.get("/api/me", headers=headers).get_json()["credits"] == 5
        assert execute(sent["messageId"], sent["runId"]) is None  # a late delivery does nothing
        assert llm.requests == []
        assert _events(redis_client, sent["messageId"])[-1] == ("done", {"status": "CANCELLED"})


def test_cancel_while_streaming_text_closes_the_model_stream_and_writes_nothing_more(
    api: Api, llm: Any, redis_client: Any
) -> None:
    llm.script(Reply("word " * 200, chunk_size=5, delay=0.05))
    body = api.send(api.project()["id"]).json()
    _streaming(api, body["messageId"], with_content=True)
    answer = api.request("DELETE", "/api/messages", json={"messageId": body["messageId"]})
    assert answer.json() == {"success": True}
    assert api.message(body["messageId"])["status"] == "CANCELLED"
    assert llm.wait_for_disconnect(timeout=3)
    frozen = api.message(body["messageId"])
    time.sleep(0.5)
    assert api.message(body["messageId"]) == frozen
    assert api.get("/api/me").json()["credits"] == 4  # streaming had started: credit kept
    events = _events(redis_client, body["messageId"])
    assert [kind for kind, _ in events].count("done") == 1
    assert events[-1] == ("done", {"status": "CANCELLED"})


def test_cancel_while_the_model_is_silent_is_noticed_at_once(api: Api, llm: Any) -> None:
    llm.script(Hang(60))
    body = api.send(api.project()["id"]).json()
    _streaming(api, body["messageId"])
    assert llm.wait_for_requests(1, timeout=5)
    _cancel(api, body["messageId"])
    assert llm.wait_for_disconnect(timeout=2)
    assert len(llm.requests) == 1  # no retry, no fallback after a cancel


def test_cancel_while_a_tool_command_runs_kills_it_and_writes_no_fragment(
    api: Api, llm: Any, db: Any, settings: Settings
) -> None:
    # The shell execs a lone command, so the process to find is `sleep`, whose argv (NUL-
    # separated) holds the marker once its separators read as spaces; bubblewrap's holds it too.
    marker = f"sleep 7{uuid.uuid4().int % 10**9:09d}"
    llm.script(
        Reply(
            "",
            tool_calls=[
                ToolCall("write_file", {"path": "index.html", "content": "x"}),
                ToolCall("run_command", {"command": marker, "timeout": 300}),
            ],
        ),
        Reply("never", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})]),
    )
    body = api.send(api.project()["id"]).json()
    running = lambda: sandbox_processes([settings.sandbox_root], marker)  # noqa: E731
    try:
        wait_for(running, 15, "the tool command to start")
    finally:
        _cancel(api, body["messageId"])
    wait_for(lambda: not running(), 5, "the tool command to die")
    time.sleep(0.3)
    final = api.message(body["messageId"])
    assert final["status"] == "CANCELLED"
    with transaction(db) as session:
        assert session.query(Fragment).filter_by(message_id=body["messageId"]).count() == 0
    assert len(llm.requests) == 1


def test_after_a_cancel_the_conversation_takes_a_new_prompt_at_once(api: Api, llm: Any) -> None:
    llm.script(Hang(60))
    project = api.project()
    body = api.send(project["id"]).json()
    _cancel(api, body["messageId"])
    again = api.send(project["id"], "Try again")
    assert again.status_code == 201, again.text
    assert api.wait_terminal(again.json()["messageId"])["status"] == "COMPLETE"


def test_cancel_racing_completion_ends_in_one_state_or_the_other(
    api: Api, llm: Any, db: Any
) -> None:
    written = iter(range(1_000))

    def script() -> None:
        llm.reset()  # a cancelled round may leave its second reply unread
        # Each round changes the app: a run that changes nothing makes no version (DESIGN 12).
        write = ToolCall("write_file", {"path": "a.txt", "content": f"a{next(written)}"})
        llm.script(
            Reply("", tool_calls=[write]),
            Reply("ok", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})]),
        )

    outcomes = []
    api.get("/api/me")
    with transaction(db) as session:
        accounts.set_credits(session, api.user_id, 100, 5)
    project = api.project()
    script()
    probe = api.send(project["id"], "Probe").json()
    started = time.monotonic()
    api.wait_terminal(probe["messageId"])
    duration = time.monotonic() - started
    rounds = 10
    for round_ in range(rounds):
        script()
        body = api.send(project["id"], f"Round {round_}").json()
        # From at once (CANCELLED) to 1.5 times a run's duration (COMPLETE), races between.
        time.sleep(duration * 1.5 * round_ / (rounds - 1))
        answer = api.request("DELETE", f"/api/messages/{body['messageId']}")
        final = api.wait_terminal(body["messageId"])
        with transaction(db) as session:
            fragments = session.query(Fragment).filter_by(message_id=body["messageId"]).count()
        if answer.status_code == 200:
            assert (final["status"], fragments) == ("CANCELLED", 0)
        else:
            assert answer.status_code == 409
            assert (final["status"], fragments) == ("COMPLETE", 1)
        outcomes.append(final["status"])
    assert set(outcomes) == {"CANCELLED", "COMPLETE"}, outcomes


def test_a_cancelled_run_keeps_no_sandbox(api: Api, llm: Any, settings: Settings) -> None:
    llm.script(
        Reply("", tool_calls=[ToolCall("write_file", {"path": "a.txt", "content": "a"})]),
        Hang(60),
    )
    body = api.send(api.project()["id"]).json()
    assert llm.wait_for_requests(2, timeout=10)
    # Workspaces are named <runId>.<suffix>: one exists while the model is asked again.
    workspaces = lambda: list(Path(settings.sandbox_root).glob(f"{body['runId']}.*"))  # noqa: E731
    assert workspaces(), "the run should have a workspace by its second step"
    _cancel(api, body["messageId"])
    wait_for(lambda: not workspaces(), 5, "the workspace to be removed")
