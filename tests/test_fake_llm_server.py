"""The fake LLM server, exercised through the real `openai` SDK, sync and async."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai import Stream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageFunctionToolCall

from tests.fakes.llm_server import Cut, Error, FakeLLM, Hang, Reply, ToolCall

MESSAGES: list[Any] = [{"role": "user", "content": "Build me a todo app"}]


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def client(llm: FakeLLM) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=llm.base_url, api_key="x", max_retries=0, timeout=2.0) as c:
        yield c


def stream(client: openai.OpenAI, include_usage: bool = False) -> Stream[ChatCompletionChunk]:
    options: Any = {"include_usage": True} if include_usage else openai.omit
    return client.chat.completions.create(
        model="fake-1", messages=MESSAGES, stream=True, stream_options=options
    )


def tool_call_pieces(chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    """Tool-call deltas as plain dicts, absent fields dropped, to assert on exactly what came."""
    deltas = [c.choices[0].delta for c in chunks]
    return [t.model_dump(exclude_none=True) for d in deltas for t in d.tool_calls or []]


def head(name: str) -> dict[str, str]:
    return {"name": name, "arguments": ""}


def test_streamed_text_arrives_in_chunks_that_concatenate_to_the_scripted_text(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Reply("Here is your todo app, fresh from the oven.", chunk_size=5))

    chunks = list(stream(client))

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == (
        "Here is your todo app, fresh from the oven."
    )
    assert [c.choices[0].delta.content for c in chunks[1:3]] == ["Here ", "is yo"]
    assert {(c.object, c.model, c.id) for c in chunks} == {
        ("chat.completion.chunk", "fake-1", chunks[0].id)
    }
    assert [c.choices[0].finish_reason for c in chunks][-2:] == [None, "stop"]
    assert llm.requests[0]["messages"] == MESSAGES
    assert llm.requests[0]["stream"] is True


def test_tool_call_arguments_arrive_in_pieces_keyed_by_index_that_join_into_valid_json(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(
        Reply(
            "Writing files.",
            tool_calls=[
                ToolCall("write_file", {"path": "app.py", "content": "print('hi')"}, id="call_1"),
                ToolCall("run", {"command": "python app.py"}),
            ],
            chunk_size=4,
        )
    )

    chunks = list(stream(client))

    pieces = tool_call_pieces(chunks)
    heads = [p for p in pieces if "id" in p]
    assert heads == [
        {"index": 0, "id": "call_1", "type": "function", "function": head("write_file")},
        {"index": 1, "id": heads[1]["id"], "type": "function", "function": head("run")},
    ]
    assert heads[1]["id"].startswith("call_")
    rest = [p for p in pieces if "id" not in p]
    assert len(rest) > 4
    assert all(
        p == {"index": p["index"], "function": {"arguments": p["function"]["arguments"]}}
        for p in rest
    )
    arguments = {
        i: "".join(p["function"]["arguments"] for p in pieces if p["index"] == i) for i in (0, 1)
    }
    assert json.loads(arguments[0]) == {"path": "app.py", "content": "print('hi')"}
    assert json.loads(arguments[1]) == {"command": "python app.py"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_string_tool_arguments_are_sent_verbatim_even_when_malformed(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Reply(tool_calls=[ToolCall("run", '{"command": "ls"')]))

    chunks = list(stream(client))

    pieces = tool_call_pieces(chunks)
    assert "".join(p["function"]["arguments"] for p in pieces) == '{"command": "ls"'


def test_usage_arrives_in_a_final_chunk_without_choices_when_include_usage_is_set(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Reply("Done."), Reply("Done."))

    with_usage = list(stream(client, include_usage=True))
    without_usage = list(stream(client))

    last = with_usage[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in with_usage[:-1])
    assert all(c.usage is None and c.choices for c in without_usage)


def test_a_non_streamed_request_gets_one_chat_completion(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Reply("All done.", tool_calls=[ToolCall("finish", {"ok": True}, id="call_9")]))

    completion = client.chat.completions.create(model="fake-1", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.model == "fake-1"
    choice = completion.choices[0]
    assert choice.message.content == "All done."
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_9",
        "finish",
        '{"ok": true}',
    )
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0


def test_a_429_raises_rate_limit_error_with_retry_after_visible(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Error(429, "slow down", headers={"Retry-After": "1"}))

    with pytest.raises(openai.RateLimitError) as caught:
        stream(client)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"
    assert "slow down" in caught.value.message


def test_a_500_raises_internal_server_error(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.script(Error(500))

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fake-1", messages=MESSAGES)

    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"


def test_a_hang_past_the_read_timeout_raises_api_timeout_error_and_is_seen_as_a_disconnect(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Hang(after_chunks=1))
    received: list[str] = []

    with pytest.raises(openai.APITimeoutError):
        for chunk in stream(client.with_options(timeout=0.3)):
            received.append(chunk.choices[0].delta.content or "")

    assert received == ["partial "]
    assert llm.wait_for_disconnect(timeout=2.0)
    assert llm.disconnects == 1


def test_a_hang_without_streaming_times_out_before_any_headers(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Hang())

    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model="fake-1", messages=MESSAGES)

    assert llm.wait_for_disconnect(timeout=2.0)


def test_a_short_hang_stalls_then_completes_the_stream(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.script(Hang(seconds=0.1, after_chunks=2, text="ab"))

    chunks = list(stream(client))

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "abab"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert llm.disconnects == 0


def test_a_cut_stream_yields_what_was_sent_then_raises_api_connection_error(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    # The body is chunked, so the SDK's HTTP layer sees the cut; it never looks for [DONE].
    llm.script(Cut(after_chunks=2))
    received: list[str] = []

    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in stream(client):
            received.append(chunk.choices[0].delta.content or "")

    assert type(caught.value) is openai.APIConnectionError
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert received == ["partial ", "partial "]


def test_a_reply_cut_inside_a_tool_call_sends_part_of_its_arguments_then_breaks(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    call = ToolCall("write_file", {"path": "a.txt", "content": "abcdefgh"})
    llm.script(Reply("", tool_calls=[call], chunk_size=4, cut_after=4))
    pieces: list[str] = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in stream(client):
            for delta in chunk.choices[0].delta.tool_calls or []:
                pieces.append(delta.function.arguments or "" if delta.function else "")

    # The role, the call's head, then two pieces of its arguments: cut mid-arguments.
    assert "".join(pieces) == call.arguments_json[:8]


def test_a_cut_non_streamed_response_raises_api_connection_error(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Cut())

    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(model="fake-1", messages=MESSAGES)

    assert type(caught.value) is openai.APIConnectionError


def test_closing_a_stream_early_during_a_hang_is_seen_as_a_disconnect(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Hang(after_chunks=1))

    response = stream(client)
    assert next(response).choices[0].delta.content == "partial "
    response.close()

    assert llm.wait_for_disconnect(timeout=2.0)


def test_closing_a_stream_early_while_a_slow_reply_is_streaming_is_seen_as_a_disconnect(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Reply("x" * 100, chunk_size=1, delay=0.05))

    response = stream(client)
    next(response)
    next(response)
    response.close()

    assert llm.wait_for_disconnect(timeout=2.0)
    assert len(llm.requests) == 1


def test_the_async_client_streams_the_scripted_text(llm: FakeLLM) -> None:
    llm.script(Reply("Async works too.", chunk_size=3))

    async def collect() -> str:
        async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="x", max_retries=0) as c:
            response = await c.chat.completions.create(
                model="fake-1", messages=MESSAGES, stream=True
            )
            return "".join([chunk.choices[0].delta.content or "" async for chunk in response])

    assert asyncio.run(collect()) == "Async works too."


def test_an_async_stream_closed_early_during_a_hang_is_seen_as_a_disconnect(
    llm: FakeLLM,
) -> None:
    llm.script(Hang(after_chunks=1))

    async def read_one_then_close() -> None:
        async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="x", max_retries=0) as c:
            response = await c.chat.completions.create(
                model="fake-1", messages=MESSAGES, stream=True
            )
            await anext(response)
            await response.close()

    asyncio.run(read_one_then_close())

    assert llm.wait_for_disconnect(timeout=2.0)


def test_scripted_behaviours_are_served_in_order_then_the_default(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Reply("one"), Error(500), Reply("two"))

    def ask() -> str | None:
        return (
            client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        )

    assert ask() == "one"
    with pytest.raises(openai.InternalServerError):
        ask()
    assert ask() == "two"
    assert ask() == "Hello from the fake LLM."
    llm.default = Reply("new default")
    assert ask() == "new default"
    assert len(llm.requests) == 5


def test_a_callable_behaviour_answers_from_the_request(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.default = lambda request: Reply(f"you said: {request['messages'][-1]['content']}")

    completion = client.chat.completions.create(model="m", messages=MESSAGES)

    assert completion.choices[0].message.content == "you said: Build me a todo app"


def test_stop_returns_promptly_while_a_hang_holds_a_connection(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    llm.script(Hang(after_chunks=1))
    errors: list[Exception] = []

    def consume() -> None:
        try:
            list(stream(client.with_options(timeout=30.0)))
        except openai.APIError as exc:
            errors.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert llm.wait_for_requests(1)
    assert llm.active == 1

    llm.stop()

    consumer.join(timeout=2.0)
    assert not consumer.is_alive()
    assert llm.active == 0
    assert [type(e) for e in errors] == [openai.APIConnectionError]


def test_reset_clears_the_script_and_the_records(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.script(Hang(after_chunks=1), Reply("never served"))
    response = stream(client)
    next(response)
    response.close()
    assert llm.wait_for_disconnect()

    llm.reset()

    assert (llm.requests, llm.disconnects) == ([], 0)
    completion = client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content == "Hello from the fake LLM."


def test_the_prompt_cache_covers_the_start_shared_with_the_request_before_until_reset(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    long = [{"role": "system", "content": "You build apps. " * 100}, *MESSAGES]

    def cached() -> int:
        completion = client.chat.completions.create(model="m", messages=long)  # type: ignore[arg-type]
        assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
        return completion.usage.prompt_tokens_details.cached_tokens or 0

    assert cached() == 0
    assert cached() >= 128  # the same request again: its start came from the cache
    llm.reset()  # the next test's first request shares nothing with this test's last one
    assert cached() == 0
