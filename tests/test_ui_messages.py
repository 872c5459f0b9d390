"""The translator of a run's events into the AI SDK's UI message chunks, on real event logs of
scripted runs (the fake LLM), and on the state the replay plan builds from the database."""

from __future__ import annotations

import json
from typing import Any

import redis

from orchestrator.streams.replay import Item, read_after
from orchestrator.streams.ui_messages import Chunk, UiMessageTranslator
from tests.conftest import Api, wait_for
from tests.fakes.llm_server import Error, Hang, Reply, ToolCall

PAGE = {"path": "index.html", "content": "<h1>hi</h1>"}


def log_of(client: redis.Redis, message_id: str) -> list[Item]:
    items: list[Item] = []
    while batch := read_after(client, message_id, items[-1].id if items else "0-0"):
        items += batch
    return items


def translate(message_id: str, items: list[Item]) -> list[Chunk]:
    translator = UiMessageTranslator(message_id)
    return [chunk for item in items for chunk in translator.chunks(item)]


def run(api: Api, llm: Any, *replies: Any) -> tuple[str, dict[str, Any]]:
    llm.script(*replies)
    response = api.send(api.project()["id"])
    assert response.status_code == 201, response.text
    message_id = response.json()["messageId"]
    return message_id, api.wait_terminal(message_id)


def build(api: Api, llm: Any) -> tuple[str, dict[str, Any]]:
    return run(
        api,
        llm,
        Reply("Writing the page. ", tool_calls=[ToolCall("write_file", PAGE)], chunk_size=3),
        Reply("Done.", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})]),
    )


def assert_well_formed(chunks: list[Chunk]) -> None:
    """Text parts open before their deltas and close once; steps alternate; tools pair up."""
    open_text: str | None = None
    in_step = False
    inputs: set[str] = set()
    for chunk in chunks:
        kind = chunk["type"]
        if kind == "text-start":
            assert open_text is None and in_step, chunks
            open_text = chunk["id"]
        elif kind == "text-delta":
            assert chunk["id"] == open_text, chunks
        elif kind == "text-end":
            assert chunk["id"] == open_text, chunks
            open_text = None
        elif kind == "start-step":
            assert not in_step, chunks
            in_step = True
        elif kind == "finish-step":
            assert in_step and open_text is None, chunks
            in_step = False
        elif kind == "tool-input-available":
            assert open_text is None and in_step, chunks
            inputs.add(chunk["toolCallId"])
        elif kind == "tool-output-available":
            assert chunk["toolCallId"] in inputs, chunks
    assert open_text is None and not in_step, chunks


def text(chunks: list[Chunk]) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


def test_a_build_run_becomes_text_tools_fragment_and_two_steps(
    api: Api, llm: Any, redis_client: redis.Redis
) -> None:
    message_id, final = build(api, llm)
    chunks = translate(message_id, log_of(redis_client, message_id))
    assert_well_formed(chunks)
    assert chunks[0] == {"type": "start", "messageId": message_id}
    assert chunks[-1] == {"type": "finish", "finishReason": "stop"}
    assert text(chunks) == final["content"] == "Writing the page. Done."
    kinds = [c["type"] for c in chunks]
    assert kinds.count("start-step") == kinds.count("finish-step") == 2  # two model calls
    calls = [c for c in chunks if c["type"] == "tool-input-available"]
    assert [(c["toolName"], c["input"]) for c in calls][0] == ("write_file", PAGE)
    outputs = [c["toolCallId"] for c in chunks if c["type"] == "tool-output-available"]
    assert outputs == [c["toolCallId"] for c in calls]
    (fragment,) = [c for c in chunks if c["type"] == "data-fragment"]
    assert fragment["data"]["files"] == {"index.html": "<h1>hi</h1>"}
    assert fragment["id"] == "fragment"
    # The second step begins after the tools answered: its text is a part of its own.
    second = kinds.index("start-step", kinds.index("start-step") + 1)
    assert kinds[second:].index("text-start") > 0
    assert kinds.index("tool-output-available") < second


def test_the_tools_of_one_model_call_stay_in_its_step(
    api: Api, llm: Any, redis_client: redis.Redis
) -> None:
    second = {"path": "app.js", "content": "let n = 1;"}
    message_id, final = run(
        api,
        llm,
        Reply(
            "Two files. ", tool_calls=[ToolCall("write_file", PAGE), ToolCall("write_file", second)]
        ),
        Reply("Done.", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})]),
    )
    chunks = translate(message_id, log_of(redis_client, message_id))
    assert_well_formed(chunks)
    kinds = [c["type"] for c in chunks]
    assert kinds.count("start-step") == 2, kinds
    first_step = kinds[: kinds.index("finish-step")]
    assert first_step.count("tool-output-available") == 2
    assert text(chunks) == final["content"]


def test_resuming_after_any_event_gives_exactly_the_rest(
    api: Api, llm: Any, redis_client: redis.Redis
) -> None:
    message_id, _final = build(api, llm)
    items = log_of(redis_client, message_id)
    whole = translate(message_id, items)
    for cut in range(len(items) + 1):
        translator = UiMessageTranslator(message_id)
        translator.resume_after(items[:cut])
        rest = [chunk for item in items[cut:] for chunk in translator.chunks(item)]
        assert translate(message_id, items[:cut]) + rest == whole, cut


def test_a_cancelled_run_ends_with_abort(api: Api, llm: Any, redis_client: redis.Redis) -> None:
    llm.script(Hang(seconds=30, after_chunks=1))
    response = api.send(api.project()["id"])
    message_id = response.json()["messageId"]
    wait_for(lambda: api.message(message_id)["status"] == "STREAMING", 10, "the run to start")
    assert api.delete(f"/api/messages/{message_id}").status_code == 200
    api.wait_terminal(message_id)
    chunks = translate(message_id, log_of(redis_client, message_id))
    assert_well_formed(chunks)
    assert chunks[-2:] == [
        {"type": "data-status", "id": "status", "data": {"status": "CANCELLED"}},
        {"type": "abort", "reason": "cancelled"},
    ]
    assert "finish" not in [c["type"] for c in chunks]


def test_a_failed_run_ends_with_error_then_finish(
    api: Api, llm: Any, fallback_llm: Any, redis_client: redis.Redis
) -> None:
    fallback_llm.script(Error(400, "the model refuses"))
    message_id, final = run(api, llm, Error(400, "the model refuses"))
    assert final["status"] == "FAILED"
    chunks = translate(message_id, log_of(redis_client, message_id))
    assert_well_formed(chunks)
    assert {"type": "error", "errorText": final["error"]} in chunks
    assert chunks[-1] == {"type": "finish", "finishReason": "error"}


def test_the_state_built_from_the_database_translates_alike() -> None:
    snapshot = [
        Item.synthesized("status", status="COMPLETE"),
        Item.synthesized("delta", text="All of it at once."),
        Item.synthesized("fragment", fragment={"title": "T", "files": {}}),
        Item("5-0", "done", json.dumps({"status": "COMPLETE"})),
    ]
    chunks = translate("m1", snapshot)
    assert_well_formed(chunks)
    assert text(chunks) == "All of it at once."
    assert {"type": "data-fragment", "id": "fragment", "data": {"title": "T", "files": {}}} in (
        chunks
    )


def test_checks_are_one_data_part_per_phase_and_other_events_data_parts_too() -> None:
    items = [
        Item("1-0", "check", json.dumps({"phase": "build", "status": "running"})),
        Item("2-0", "check", json.dumps({"phase": "build", "status": "passed"})),
        Item("3-0", "check", json.dumps({"phase": "render", "status": "failed", "errors": ["x"]})),
        Item("4-0", "usage", json.dumps({"tokens": 12})),
    ]
    assert [c for c in translate("m1", items) if c["type"].startswith("data-")] == [
        {
            "type": "data-check",
            "id": "check-build",
            "data": {"phase": "build", "status": "running"},
        },
        {"type": "data-check", "id": "check-build", "data": {"phase": "build", "status": "passed"}},
        {
            "type": "data-check",
            "id": "check-render",
            "data": {"phase": "render", "status": "failed", "errors": ["x"]},
        },
        {"type": "data-usage", "id": "usage", "data": {"tokens": 12}},
    ]


def test_nothing_follows_the_end_of_a_run() -> None:
    translator = UiMessageTranslator("m1")
    translator.chunks(Item("1-0", "done", json.dumps({"status": "COMPLETE"})))
    assert translator.chunks(Item("2-0", "delta", json.dumps({"text": "late"}))) == []
