"""The model's context (DESIGN section 17): the agent loop, the real provider chain and `openai`
client against the fake LLM with a small context, in a local sandbox."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from prometheus_client import REGISTRY

from models import Message, Role, Status
from orchestrator.errors import ConfigError, ProviderError
from orchestrator.providers.breaker import counts_against
from orchestrator.providers.chain import ProviderChain
from orchestrator.providers.openai_compat import OpenAICompatProvider
from orchestrator.providers.retry import BackoffWait, is_context_overflow, is_transient
from orchestrator.runs.agent import Outcome, run_agent
from orchestrator.runs.budget import RunBudget
from orchestrator.runs.context import SERVES_STATIC, build_messages
from orchestrator.runs.tools import TOOL_SPECS
from orchestrator.sandboxes.base import SandboxLimits
from orchestrator.sandboxes.local import LocalSandbox, LocalSandboxFactory
from orchestrator.settings import ProviderConfig, Settings
from orchestrator.stop import never
from tests.conftest import run_prompt, running_stack
from tests.fakes.llm_server import Error, FakeLLM, Reply, ToolCall, too_long

MAX_OUTPUT = 1000
PROMPT = "Build a to-do list app with filters, please."


@pytest.fixture
def sandbox() -> Iterator[LocalSandbox]:
    root = Path(tempfile.mkdtemp(prefix="budget-test-"))
    limits = SandboxLimits(cpu_seconds=20, memory_bytes=512 * 1024 * 1024, max_processes=64)
    box = LocalSandboxFactory(root, limits, isolation="none").create("budget", "static")
    yield box
    box.close()
    shutil.rmtree(root, ignore_errors=True)


def provider(llm: FakeLLM, name: str, context_tokens: int) -> OpenAICompatProvider:
    config = ProviderConfig(name, llm.base_url, "k", f"{name}-model", context_tokens)
    return OpenAICompatProvider(config, read_timeout=10, max_output_tokens=MAX_OUTPUT)


def chain(*providers: OpenAICompatProvider, budget: bool = True) -> ProviderChain:
    fitter = RunBudget(max_output_tokens=MAX_OUTPUT) if budget else None
    return ProviderChain(providers, wait=BackoffWait(cap=0.05), fitter=fitter)


def run(
    messages: list[dict[str, Any]], runner: ProviderChain, sandbox: LocalSandbox, steps: int = 25
) -> Outcome:
    return run_agent(messages, runner, sandbox, lambda _: None, never(), max_steps=steps)


def first_messages(history: list[Message] | None = None) -> list[dict[str, Any]]:
    prompt = Message(role=Role.USER, content=PROMPT, status=Status.COMPLETE)
    return build_messages("REACT", history or [], prompt, [], serves=SERVES_STATIC)


def size(request: dict[str, Any]) -> int:
    return len(json.dumps(request["messages"]))


def finish() -> Reply:
    return Reply("Done.", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})])


def turns(count: int, chars: int) -> list[Message]:
    """A long conversation: alternating user and assistant turns, each `chars` long."""
    out = []
    for i in range(count):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        text = f"turn {i}: " + f"words of turn {i} " * (chars // 16)
        out.append(Message(role=role, content=text, status=Status.COMPLETE))
    return out


def test_a_long_conversation_fits_the_first_request_keeping_the_latest_turns_and_the_prompt(
    sandbox: LocalSandbox,
) -> None:
    history = turns(44, 3000)
    with FakeLLM() as llm:
        llm.context_limit = 40_000
        llm.script(finish())
        outcome = run(first_messages(history), chain(provider(llm, "primary", 10_000)), sandbox)
        requests = llm.requests

    assert outcome.stop_reason == "finish"
    assert len(requests) == 1 and size(requests[0]) <= 40_000
    sent = requests[0]["messages"]
    assert sent[0]["role"] == "system"
    note = sent[1]["content"]
    kept = sent[2:-1]
    assert note == (
        f"[{44 - len(kept)} earlier messages of this conversation are left out here to fit the "
        "model's context.]"
    )
    assert len(kept) >= 4
    # The latest turns whole, in order, and the prompt last.
    assert [m["content"] for m in kept] == [m.content for m in history[-len(kept) :]]
    assert sent[-1] == {"role": "user", "content": PROMPT}
    assert requests[0]["max_tokens"] == MAX_OUTPUT


@pytest.mark.parametrize("context_tokens", [128_000, 8_000])
def test_turns_past_the_history_limit_are_counted_in_the_same_note(
    sandbox: LocalSandbox, context_tokens: int
) -> None:
    history = turns(130, 160)  # 100 load whole, then the budget may leave out more
    with FakeLLM() as llm:
        llm.script(finish())
        run(first_messages(history), chain(provider(llm, "primary", context_tokens)), sandbox)
        sent = llm.requests[0]["messages"]

    kept = sent[2:-1]
    assert len(kept) == 100 if context_tokens == 128_000 else len(kept) < 100
    assert sent[1]["content"].startswith(f"[{130 - len(kept)} earlier messages")
    assert [m["content"] for m in kept] == [m.content for m in history[-len(kept) :]]


def test_a_5000_line_file_is_read_a_bounded_page_first_then_exact_pages_by_offset(
    sandbox: LocalSandbox,
) -> None:
    lines = [f"line {n:05d} of the big file\n" for n in range(5000)]
    sandbox.write("big.txt", "".join(lines))
    with FakeLLM() as llm:
        llm.script(
            Reply("", tool_calls=[ToolCall("read_file", {"path": "big.txt"})]),
            Reply("", tool_calls=[ToolCall("read_file", {"path": "big.txt", "offset": 2000})]),
            Reply(
                "",
                tool_calls=[
                    ToolCall("read_file", {"path": "big.txt", "offset": 4990, "limit": 5}),
                    ToolCall("read_file", {"path": "big.txt", "offset": 4000, "limit": 2000}),
                    ToolCall("read_file", {"path": "big.txt", "offset": 6000}),
                ],
            ),
            finish(),
        )
        outcome = run(first_messages(), chain(provider(llm, "primary", 128_000)), sandbox)
        offered = llm.requests[0]

    # The model is told how to page: the tool's arguments, and the system prompt.
    read_file = next(t for t in offered["tools"] if t["function"]["name"] == "read_file")
    arguments = read_file["function"]["parameters"]["properties"]
    assert {name: arguments[name]["type"] for name in arguments} == {
        "path": "string",
        "offset": "integer",
        "limit": "integer",
    }
    assert "offset set to the nextOffset" in offered["messages"][0]["content"]
    first, second, small, last, past = (call["result"] for call in outcome.tool_calls[:5])
    assert first == {
        "path": "big.txt",
        "content": "".join(lines[:2000]),
        "offset": 0,
        "lines": 2000,
        "totalLines": 5000,
        "truncated": True,
        "nextOffset": 2000,
    }
    assert second["content"] == "".join(lines[2000:4000]) and second["nextOffset"] == 4000
    assert small["content"] == "".join(lines[4990:4995]) and small["truncated"] is True
    assert last["content"] == "".join(lines[4000:]) and last["truncated"] is False
    assert "nextOffset" not in last and last["totalLines"] == 5000
    assert "past the end" in past["error"]


def test_a_file_of_long_lines_is_read_at_most_64_kib_at_a_time(sandbox: LocalSandbox) -> None:
    lines = [f"{n:04d}" + "x" * 195 + "\n" for n in range(1000)]  # 200 bytes a line
    sandbox.write("wide.txt", "".join(lines))
    with FakeLLM() as llm:
        llm.script(Reply("", tool_calls=[ToolCall("read_file", {"path": "wide.txt"})]), finish())
        outcome = run(first_messages(), chain(provider(llm, "primary", 128_000)), sandbox)

    page = outcome.tool_calls[0]["result"]
    assert page["lines"] == 64 * 1024 // 200 and len(page["content"].encode()) <= 64 * 1024
    assert page["content"] == "".join(lines[: page["lines"]])
    assert page["truncated"] is True and page["nextOffset"] == page["lines"]


def command_step(step: int, chars: int = 300_000) -> Reply:
    # `chars` characters between a first and a last line only this step prints.
    command = f"echo FIRST-{step}; head -c {chars} /dev/zero | tr '\\0' x; echo; echo LAST-{step}"
    return Reply(f"Step {step}.", tool_calls=[ToolCall("run_command", {"command": command})])


def test_fifteen_steps_of_huge_output_stay_under_the_limit_and_complete(
    sandbox: LocalSandbox,
) -> None:
    with FakeLLM() as llm:
        llm.context_limit = 60_000
        llm.script(*(command_step(step) for step in range(15)), finish())
        outcome = run(first_messages(), chain(provider(llm, "primary", 15_000)), sandbox)
        requests = llm.requests

    assert outcome.stop_reason == "finish" and outcome.steps == 16
    assert len(requests) == 16  # none refused, none asked again
    assert all(size(request) <= 60_000 for request in requests)
    last = requests[-1]["messages"]
    results = [m["content"] for m in last if m["role"] == "tool"]
    # The latest output: its head and its tail (where a build's error is).
    assert "FIRST-14" in results[-1] and "LAST-14" in results[-1]
    assert json.loads(results[-1])["truncated"] is True
    # Older outputs stubbed: what it was and how to get it again.
    stub = json.loads(results[0])["leftOut"]
    assert stub.startswith("run_command `echo FIRST-0;") and stub.endswith(
        "of output, left out; run it again if you need it"
    )
    assert [m for m in last if m["role"] == "user"] == [{"role": "user", "content": PROMPT}]
    # The start stays the same: the system prompt and the prompt in every request, and what
    # was stubbed stays stubbed (a stub once sent is sent again, byte for byte).
    stubbed: dict[str, str] = {}
    for request in requests:
        assert request["messages"][:2] == last[:2]
        now = {
            m["tool_call_id"]: m["content"]
            for m in request["messages"]
            if m["role"] == "tool" and "leftOut" in m["content"]
        }
        assert now.items() >= stubbed.items()
        stubbed = now
    assert len(stubbed) >= 10


def test_every_request_leaves_the_replys_room_free(sandbox: LocalSandbox) -> None:
    # A reply of up to a third of the context: the prompt may only take the rest.
    context, output = 12_000, 4_000
    with FakeLLM() as llm:
        llm.context_limit = context * 4  # the whole context, in the fake's four characters a token
        llm.script(*(command_step(step) for step in range(6)), finish())
        config = ProviderConfig("primary", llm.base_url, "k", "primary-model", context)
        small = OpenAICompatProvider(config, read_timeout=10, max_output_tokens=output)
        budget = RunBudget(max_output_tokens=output)
        runner = ProviderChain([small], wait=BackoffWait(cap=0.05), fitter=budget)
        outcome = run(first_messages(), runner, sandbox)
        requests = llm.requests

    assert outcome.stop_reason == "finish" and len(requests) == 7
    assert all(request["max_tokens"] == output for request in requests)
    assert max(size(request) for request in requests) <= (context - output) * 4


def test_a_model_that_counts_more_tokens_than_estimated_corrects_the_estimate(
    sandbox: LocalSandbox,
) -> None:
    # A dense tokenizer: two characters a token, where the budget starts by assuming three.
    with FakeLLM() as llm:
        llm.chars_per_token = 2
        llm.context_limit = (15_000 - MAX_OUTPUT) * 2
        # Outputs of 3,000 characters: the run's requests grow a little at a time.
        llm.script(*(command_step(step, 3000) for step in range(15)), finish())
        outcome = run(first_messages(), chain(provider(llm, "primary", 15_000)), sandbox)
        requests = llm.requests

    assert outcome.stop_reason == "finish"
    # Its reported usage corrected the estimate before any request went past its context.
    assert len(requests) == 16  # none refused, none asked again
    assert all(size(request) <= (15_000 - MAX_OUTPUT) * 2 for request in requests)


def test_a_shrink_leaves_out_only_what_it_must(sandbox: LocalSandbox) -> None:
    # Outputs of 3,000 characters: a shrink every few steps, each down to 75% of the limit.
    with FakeLLM() as llm:
        llm.script(*(command_step(step, 3000) for step in range(24)), finish())
        outcome = run(first_messages(), chain(provider(llm, "primary", 12_000)), sandbox)
        sizes = [size(request) for request in llm.requests]
        last = llm.requests[-1]["messages"]

    assert outcome.stop_reason == "finish"
    shrunk = next(i for i in range(1, len(sizes)) if sizes[i] < sizes[i - 1])
    # Each shrink keeps more than half of what fits, not only the latest step.
    assert min(sizes[shrunk:]) > max(sizes) // 2
    whole = [m for m in last if m["role"] == "tool" and "leftOut" not in m["content"]]
    assert len(whole) >= 3


def test_without_the_budget_the_same_run_is_refused_as_too_long(sandbox: LocalSandbox) -> None:
    # The control for the test above: the fake's limit is real, and the budget is what fits it.
    with FakeLLM() as llm:
        llm.context_limit = 60_000
        llm.script(*(command_step(step) for step in range(15)), finish())
        with pytest.raises(ProviderError) as failed:
            run(first_messages(), chain(provider(llm, "primary", 15_000), budget=False), sandbox)
    assert is_context_overflow(failed.value.__cause__ or failed.value)


@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param(too_long(200_000, 100_000), id="context_length_exceeded"),
        pytest.param(
            Error(400, "prompt is too long: 210000 tokens > 200000 maximum"), id="message-only"
        ),
    ],
)
def test_a_context_refusal_is_asked_again_smaller_on_the_same_provider(
    sandbox: LocalSandbox, refusal: Error
) -> None:
    retries = "appforge_context_retries_total"
    before = REGISTRY.get_sample_value(retries, {"provider": "primary"}) or 0
    with FakeLLM() as llm, FakeLLM() as fallback:
        llm.script(refusal, finish())
        runner = chain(provider(llm, "primary", 128_000), provider(fallback, "fallback", 128_000))
        outcome = run(first_messages(turns(10, 2000)), runner, sandbox)
        requests = llm.requests

    assert outcome.stop_reason == "finish"
    assert len(requests) == 2 and fallback.requests == []
    assert size(requests[1]) <= size(requests[0]) // 2
    assert requests[1]["messages"][-1] == {"role": "user", "content": PROMPT}
    assert runner.metadata()["provider"] == "primary"
    # Counted by provider, for the operator (README, Metrics).
    assert REGISTRY.get_sample_value(retries, {"provider": "primary"}) == before + 1


def test_a_provider_still_too_long_when_asked_smaller_hands_over_to_the_fallback(
    sandbox: LocalSandbox,
) -> None:
    with FakeLLM() as llm, FakeLLM() as fallback:
        llm.context_limit = 100  # smaller than any request
        fallback.script(finish())
        runner = chain(provider(llm, "primary", 128_000), provider(fallback, "fallback", 128_000))
        outcome = run(first_messages(), runner, sandbox)

    assert outcome.stop_reason == "finish"
    assert len(llm.requests) == 2 and len(fallback.requests) == 1
    meta = runner.metadata()
    assert meta["provider"] == "fallback" and "context" in meta["fallbackReason"]


def test_a_context_refusal_is_not_a_provider_fault() -> None:
    # What the real client raises for the fake's refusal: not retried as is, no breaker strike.
    with FakeLLM() as llm:
        llm.script(too_long(200_000, 100_000), Error(400, "Input is too long for this model."))
        client = openai.OpenAI(base_url=llm.base_url, api_key="k", max_retries=0)
        for _ in range(2):
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(model="m", messages=[])
            assert is_context_overflow(caught.value)
            assert not is_transient(caught.value) and not counts_against(caught.value)
        # The same refusal inside a stream (an `error` chunk) is no transient fault either.
        chunk = openai.APIError(
            "This model's maximum context length is 8192 tokens.",
            httpx2.Request("POST", llm.base_url),
            body={"message": "too long", "code": "context_length_exceeded"},
        )
        assert not is_transient(chunk) and not counts_against(chunk)
        llm.script(Error(400, "messages must not be empty"))
        with pytest.raises(openai.BadRequestError) as other:
            client.chat.completions.create(model="m", messages=[])
    assert not is_context_overflow(other.value)


def test_usage_is_what_the_provider_reported_and_requests_keep_their_start(
    sandbox: LocalSandbox,
) -> None:
    with FakeLLM() as llm:
        llm.script(
            Reply("", tool_calls=[ToolCall("write_file", {"path": "a.txt", "content": "A"})]),
            Reply("", tool_calls=[ToolCall("read_file", {"path": "a.txt"})]),
            Reply("", tool_calls=[ToolCall("list_files", {})]),
            finish(),
        )
        runner = chain(provider(llm, "primary", 128_000))
        run(first_messages(turns(4, 500)), runner, sandbox)
        requests = llm.requests

    prompts = [size(request) // 4 for request in requests]  # how the fake counts
    # Each request holds the one before whole, as its start: a provider's cache applies.
    for before, after in zip(requests, requests[1:], strict=False):
        assert after["messages"][: len(before["messages"])] == before["messages"]
    usage = runner.metadata()["usage"]
    assert usage["promptTokens"] == sum(prompts)
    assert usage["requests"] == 4 and usage["maxRequestTokens"] == max(prompts)
    assert usage["completionTokens"] > 0
    # The fake caches the start shared with the request before, in blocks of 128 tokens.
    # (the JSON of the messages before, but its closing bracket).
    cached = [0] + [(size(before) - 1) // 4 // 128 * 128 for before in requests[:-1]]
    assert usage["cachedTokens"] == sum(cached) > 0
    assert all(request["max_tokens"] == MAX_OUTPUT for request in requests)


def test_a_run_records_its_usage_on_the_message_and_the_fragment(
    settings: Settings, llm: FakeLLM
) -> None:
    page = "<!doctype html><title>t</title><h1>Hi</h1>"
    llm.script(
        Reply("", tool_calls=[ToolCall("write_file", {"path": "index.html", "content": page})]),
        Reply("", tool_calls=[ToolCall("read_file", {"path": "index.html"})]),
        finish(),
    )
    with running_stack(settings.model_copy(update=dict(llm_max_output_tokens=777))) as (
        client,
        execute,
    ):
        message, fragment = run_prompt(client, execute, PROMPT)
    requests = llm.requests

    assert message["status"] == "COMPLETE" and len(requests) == 3
    assert all(request["max_tokens"] == 777 for request in requests)
    prompts = [size(request) // 4 for request in requests]
    cached = [0] + [(size(before) - 1) // 4 // 128 * 128 for before in requests[:-1]]
    expected = {
        "promptTokens": sum(prompts),
        "completionTokens": message["metadata"]["usage"]["completionTokens"],
        "cachedTokens": sum(cached),
        "requests": 3,
        "maxRequestTokens": max(prompts),
    }
    assert message["metadata"]["usage"] == expected and expected["completionTokens"] > 0
    assert fragment["metadata"]["usage"] == expected
    # The system message and the first user message stay byte-identical across the run.
    firsts = {json.dumps(request["messages"][:2]) for request in requests}
    assert len(firsts) == 1


def test_a_listing_of_many_files_is_capped(sandbox: LocalSandbox) -> None:
    for n in range(600):
        sandbox.write(f"src/f{n:03d}.js", "x")
    with FakeLLM() as llm:
        llm.script(Reply("", tool_calls=[ToolCall("list_files", {})]), finish())
        outcome = run(first_messages(), chain(provider(llm, "primary", 128_000)), sandbox)

    listing = outcome.tool_calls[0]["result"]
    assert listing["files"] == [f"src/f{n:03d}.js" for n in range(500)]
    assert listing["total"] == 600 and listing["truncated"] is True


def test_the_budget_is_set_per_provider_with_sensible_defaults() -> None:
    env = {
        "LLM_PRIMARY_BASE_URL": "http://primary/v1",
        "LLM_PRIMARY_MODEL": "p",
        "LLM_FALLBACK_BASE_URL": "http://fallback/v1",
        "LLM_FALLBACK_MODEL": "f",
    }
    plain = Settings.from_env(env)
    assert plain.llm_max_output_tokens == 8192
    assert [p.context_tokens for p in plain.providers] == [128000, 128000]
    tuned = Settings.from_env(
        {**env, "LLM_FALLBACK_CONTEXT_TOKENS": "32768", "LLM_MAX_OUTPUT_TOKENS": "4096"}
    )
    assert [p.context_tokens for p in tuned.providers] == [128000, 32768]
    assert tuned.llm_max_output_tokens == 4096
    with pytest.raises(ConfigError, match="LLM_PRIMARY_CONTEXT_TOKENS must be a whole number"):
        Settings.from_env({**env, "LLM_PRIMARY_CONTEXT_TOKENS": "lots"})
    with pytest.raises(ConfigError, match="must be larger than LLM_MAX_OUTPUT_TOKENS"):
        Settings.from_env({**env, "LLM_PRIMARY_CONTEXT_TOKENS": "8000"})
    with pytest.raises(ConfigError, match="LLM_MAX_OUTPUT_TOKENS must be a positive number"):
        Settings.from_env({**env, "LLM_MAX_OUTPUT_TOKENS": "0"})


def test_a_user_message_added_by_a_later_step_does_not_take_the_prompts_place() -> None:
    config = ProviderConfig("primary", "http://127.0.0.1:9/v1", "k", "m", 10_000)
    small = OpenAICompatProvider(config, max_output_tokens=MAX_OUTPUT)  # never called
    budget = RunBudget(max_output_tokens=MAX_OUTPUT)
    conversation = first_messages(turns(20, 3000))
    budget.fit(conversation, TOOL_SPECS, small, tighter=False)
    call = {"id": "c1", "type": "function", "function": {"name": "list_files", "arguments": "{}"}}
    conversation += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"files": ["a"] * 2000})},
        {"role": "user", "content": "The checks failed: fix the build."},
        {"role": "assistant", "content": "Fixing it."},
    ]
    sent, _ = budget.fit(conversation, TOOL_SPECS, small, tighter=False)

    assert [m["content"] for m in sent if m["role"] == "user"][-2:] == [
        PROMPT,
        "The checks failed: fix the build.",
    ]
    assert json.loads(sent[-3]["content"])["leftOut"].startswith("list_files .: ")
    assert sent[1]["content"].startswith("[") and "earlier messages" in sent[1]["content"]


def test_older_written_and_read_files_become_stubs_that_say_how_to_get_them_again() -> None:
    config = ProviderConfig("primary", "http://127.0.0.1:9/v1", "k", "m", 12_000)
    small = OpenAICompatProvider(config, max_output_tokens=MAX_OUTPUT)  # never called
    budget = RunBudget(max_output_tokens=MAX_OUTPUT)
    app = "export default function App() { return null }\n" * 263  # 12,098 characters
    conversation = first_messages()
    for step, (name, args, result) in enumerate(
        [
            ("write_file", {"path": "src/App.jsx", "content": app}, {"success": True}),
            ("read_file", {"path": "src/App.jsx"}, {"path": "src/App.jsx", "content": app}),
            ("read_file", {"path": "src/App.jsx"}, {"path": "src/App.jsx", "content": app}),
        ]
    ):
        function = {"name": name, "arguments": json.dumps(args)}
        call = {"id": f"c{step}", "type": "function", "function": function}
        conversation += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{step}", "content": json.dumps(result)},
        ]
    sent, _ = budget.fit(conversation, TOOL_SPECS, small, tighter=False)

    written = json.loads(sent[2]["tool_calls"][0]["function"]["arguments"])
    assert written == {
        "path": "src/App.jsx",
        "content": "[12,098 characters, left out; read_file src/App.jsx to see the file]",
    }
    stub = json.loads(sent[5]["content"])["leftOut"]
    size = len(conversation[5]["content"])
    assert (
        stub
        == f"read_file src/App.jsx: {size:,} characters, left out; read it again if you need it"
    )
    assert json.loads(sent[-1]["content"])["content"] == app  # the latest step whole
    assert sent[:2] == conversation[:2]
