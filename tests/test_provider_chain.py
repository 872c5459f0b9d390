"""Runs through the real openai client against scripted providers: retries and fallback."""

from __future__ import annotations

import time
from typing import Any

from models import transaction
from orchestrator import accounts
from tests.conftest import Api
from tests.fakes.llm_server import Cut, Error, Hang, Reply, ToolCall


def test_primary_500s_hand_the_run_to_the_fallback(api: Api, llm: Any, fallback_llm: Any) -> None:
    llm.script(Error(500), Error(500), Error(500))
    fallback_llm.script(Reply("From the fallback."))
    body = api.send(api.project()["id"]).json()
    final = api.wait_terminal(body["messageId"])
    assert final["status"] == "COMPLETE"
    assert final["content"] == "From the fallback."
    assert final["metadata"]["provider"] == "fallback"
    assert final["metadata"]["model"] == "fallback-model"
    assert final["metadata"]["attempts"] == 4
    assert len(llm.requests) == 3


def test_a_429_is_retried_on_the_same_provider_after_retry_after(api: Api, llm: Any) -> None:
    llm.script(Error(429, headers={"Retry-After": "1"}), Reply("Second time lucky."))
    started = time.monotonic()
    body = api.send(api.project()["id"]).json()
    final = api.wait_terminal(body["messageId"])
    assert time.monotonic() - started >= 1.0
    assert final["content"] == "Second time lucky."
    assert final["metadata"]["provider"] == "primary"
    assert final["metadata"]["attempts"] == 2


def test_a_silent_primary_times_out_and_the_fallback_answers(
    api: Api, llm: Any, fallback_llm: Any
) -> None:
    llm.script(Hang(30), Hang(30), Hang(30))
    fallback_llm.script(Reply("Awake."))
    body = api.send(api.project()["id"]).json()
    final = api.wait_terminal(body["messageId"], timeout=30)
    assert final["content"] == "Awake."
    assert final["metadata"]["provider"] == "fallback"
    assert llm.wait_for_disconnect(timeout=5, count=3)


def test_a_rejected_key_falls_back_without_retrying(api: Api, llm: Any, fallback_llm: Any) -> None:
    llm.script(Error(401, message="bad key"))
    fallback_llm.script(Reply("Fine."))
    final = api.wait_terminal(api.send(api.project()["id"]).json()["messageId"])
    assert final["content"] == "Fine."
    assert len(llm.requests) == 1


def test_a_stream_cut_after_text_fails_keeping_the_text_and_never_switches(
    api: Api, llm: Any, fallback_llm: Any
) -> None:
    llm.script(Cut(after_chunks=2, text="partial "))
    final = api.wait_terminal(api.send(api.project()["id"]).json()["messageId"])
    assert final["status"] == "FAILED" and final["type"] == "ERROR"
    assert final["content"] == "partial partial "
    assert final["error"]
    assert fallback_llm.requests == []
    assert api.get("/api/me").json()["credits"] == 5


def test_every_provider_down_fails_cleanly_and_refunds(
    api: Api, llm: Any, fallback_llm: Any, db: Any
) -> None:
    llm.default = Error(503)
    fallback_llm.default = Error(500)
    try:
        final = api.wait_terminal(api.send(api.project()["id"]).json()["messageId"])
    finally:
        llm.default = Reply("Hello from the fake LLM.")
        fallback_llm.default = Reply("Hello from the fake LLM.")
    assert final["status"] == "FAILED" and final["type"] == "ERROR"
    assert final["error"]
    assert "unavailable" in final["content"]
    assert api.get("/api/me").json()["credits"] == 5
    with transaction(db) as session:
        assert accounts.ledger_balance(session, api.user_id) == 5
    assert len(llm.requests) == 3 and len(fallback_llm.requests) == 3


PAGE = "<!doctype html><title>second</title>"


def _write(content: str, cut_after: int | None = None) -> Reply:
    # chunk_size 4: the arguments arrive in many pieces, so a cut lands inside them.
    call = ToolCall("write_file", {"path": "index.html", "content": content})
    return Reply("", tool_calls=[call], chunk_size=4, cut_after=cut_after)


def _finish() -> Reply:
    return Reply("Done.", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})])


def test_a_stream_cut_mid_tool_call_is_retried_with_the_arguments_afresh(
    api: Api, llm: Any
) -> None:
    llm.script(_write("<!doctype html><title>first attempt</title>", cut_after=8), _write(PAGE))
    llm.script(_finish())
    final = api.wait_terminal(api.send(api.project()["id"]).json()["messageId"])
    assert final["status"] == "COMPLETE", final
    assert len(llm.requests) == 3
    write = final["toolCalls"][0]
    assert write["args"] == {"path": "index.html", "content": PAGE}, write
    assert write["result"]["success"] is True, write
    fragment = api.get(f"/api/messages/{final['id']}/fragment").json()
    assert fragment["files"] == {"index.html": PAGE}


def test_a_fallback_after_cuts_mid_tool_call_starts_the_call_afresh(
    api: Api, llm: Any, fallback_llm: Any
) -> None:
    cut = _write("<!doctype html><title>primary</title>", cut_after=8)
    llm.script(cut, cut, cut, _finish())
    fallback_llm.script(_write(PAGE))
    final = api.wait_terminal(api.send(api.project()["id"]).json()["messageId"])
    assert final["status"] == "COMPLETE", final
    assert len(fallback_llm.requests) == 1
    assert final["toolCalls"][0]["args"] == {"path": "index.html", "content": PAGE}
    fragment = api.get(f"/api/messages/{final['id']}/fragment").json()
    assert fragment["files"] == {"index.html": PAGE}
