"""What a run sends the model, kept inside each provider's context (DESIGN section 17).

The agent keeps the whole conversation; before every request the provider chain asks `fit` what
to send to the provider it is about to call:

    limit = the provider's context tokens - the reply's max_tokens
    if estimate(request) > limit, or the provider just said the request was too long:
        older tool results become stubs (what it was, how to get it again), oldest step first
        then older turns of the history are left out, oldest first, with a one-line note
    the system prompt (with the file tree), the prompt and the latest step always stay whole
    after "too long" from the provider: the same, down to half of the refused request

Tokens are estimated from characters (nothing to download), and the estimate is corrected with
the prompt tokens each provider reports. Shrinking goes down to a mark below the limit, and
what was shrunk stays shrunk for the rest of the run: consecutive requests keep the same start
for many steps, so providers' prompt caches apply. No extra model call.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator.providers.base import ChatMessage, Provider, ToolSpec

DEFAULT_CONTEXT_TOKENS = 128000
DEFAULT_MAX_OUTPUT_TOKENS = 8192
# Characters per token before a provider reported any usage: code and JSON run denser than
# English prose (about 4), so start low and let the reported usage correct it.
CHARS_PER_TOKEN = 3.0
# Once shrinking starts it goes down to this share of the limit, leaving room for steps to come
# before the next shrink changes the request's start; after a "too long" answer, further still.
LOW_WATER = 0.75
TIGHTER = 0.5
# A tool result or tool-call argument at most this long is cheaper than a stub: left alone.
STUB_MIN_CHARS = 400
# Each message costs a few tokens of framing beyond its text.
MESSAGE_OVERHEAD_CHARS = 16
# An estimate from characters is only near the provider's count (code, prose and JSON differ
# from step to step): requests are kept this much under the limit.
SAFETY = 0.9

_NOTE = re.compile(r"^\[(\d+) earlier messages of this conversation are left out")


def left_out_note(count: int) -> ChatMessage:
    """The one-line note that stands where older turns of the history were left out."""
    return {
        "role": "user",
        "content": f"[{count} earlier messages of this conversation are left out here to fit "
        "the model's context.]",
    }


def _note_count(message: ChatMessage) -> int | None:
    content = message.get("content")
    found = _NOTE.match(content) if message.get("role") == "user" and content else None
    return int(found[1]) if found else None


@dataclass
class RunBudget:
    """One run's budget, across the providers of its chain (implements providers.base.Fitter)."""

    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    # For a provider that does not say its own (the offline demo).
    default_context_tokens: int = DEFAULT_CONTEXT_TOKENS
    # Characters per token, per provider, corrected by what it reports.
    ratios: dict[str, float] = field(default_factory=dict)
    # What was shrunk so far: it stays shrunk (a stable start for prompt caching).
    stubbed_steps: int = 0
    dropped_turns: int = 0
    # The run's prompt: the last user message of its first request (later user messages, if a
    # step adds any, belong to the steps).
    _prompt: ChatMessage | None = field(default=None, repr=False)
    # Sizes and stubs of messages already seen, by identity (kept alive so ids stay unique).
    _sizes: dict[int, tuple[ChatMessage, int]] = field(default_factory=dict, repr=False)
    _stubs: dict[int, tuple[ChatMessage, ChatMessage]] = field(default_factory=dict, repr=False)
    # The tool calls seen so far, by id: a tool result's stub says which call made it.
    _calls: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def limit(self, provider: Provider) -> int:
        context = getattr(provider, "context_tokens", None) or self.default_context_tokens
        return max(1, int(context) - self.max_output_tokens)

    def ratio(self, provider: Provider) -> float:
        return self.ratios.get(provider.name, CHARS_PER_TOKEN)

    def estimate(
        self, messages: list[ChatMessage], tools: list[ToolSpec], provider: Provider
    ) -> int:
        chars = sum(self._size(m) for m in messages) + self._size_of_tools(tools)
        return math.ceil(chars / self.ratio(provider))

    def fit(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec],
        provider: Provider,
        *,
        tighter: bool,
    ) -> tuple[list[ChatMessage], int]:
        if tighter:
            # The provider counted more than we thought: trust our characters less from now on.
            self.ratios[provider.name] = max(1.0, self.ratio(provider) * 0.75)
        layout = _Layout.of(messages, self._prompt)
        self._prompt = layout.prompt[0] if layout.prompt else None
        ratio = self.ratio(provider)
        limit = self.limit(provider) * ratio * SAFETY  # in characters from here on
        chars = self._size_of_tools(tools) + sum(self._size(m) for m in messages)
        # Already shrunk earlier in the run: start from there.
        chars -= self._saved_by_stubs(layout, 0, self.stubbed_steps)
        chars -= self._saved_by_dropping(layout, 0, self.dropped_turns)
        # Too long for the provider whatever we estimated: half of what it refused.
        target = min(limit, chars) * TIGHTER if tighter else limit * LOW_WATER
        if tighter or chars > limit:
            while chars > target and self.stubbed_steps < len(layout.steps) - 1:
                chars -= self._saved_by_stubs(layout, self.stubbed_steps, self.stubbed_steps + 1)
                self.stubbed_steps += 1
            while chars > target and self.dropped_turns < len(layout.history):
                chars -= self._saved_by_dropping(layout, self.dropped_turns, self.dropped_turns + 1)
                self.dropped_turns += 1
        return self._assemble(layout), math.ceil(chars / ratio)

    def observe(self, provider: Provider, estimated: int, reported: int) -> None:
        if estimated > 0 and reported > 0:
            chars = estimated * self.ratio(provider)
            self.ratios[provider.name] = min(8.0, max(1.0, chars / reported))

    # -- the pieces ------------------------------------------------------------------------

    def _assemble(self, layout: _Layout) -> list[ChatMessage]:
        out = list(layout.head)
        left_out = layout.earlier_left_out + self.dropped_turns
        if left_out:
            out.append(left_out_note(left_out))
        out += layout.history[self.dropped_turns :]
        out += layout.prompt
        for index, step in enumerate(layout.steps):
            out += [self._stub(m) for m in step] if index < self.stubbed_steps else step
        return out

    def _saved_by_stubs(self, layout: _Layout, start: int, end: int) -> int:
        saved = 0
        for step in layout.steps[start : min(end, len(layout.steps) - 1)]:
            for message in step:
                stub = self._stub(message)
                if stub is not message:
                    saved += self._size(message) - self._size(stub)
        return saved

    def _saved_by_dropping(self, layout: _Layout, start: int, end: int) -> int:
        saved = sum(self._size(m) for m in layout.history[start:end])
        if start == 0 and end > 0 and not layout.earlier_left_out:
            saved -= self._size(left_out_note(0))  # the note now takes a line
        return saved

    def _size(self, message: ChatMessage) -> int:
        known = self._sizes.get(id(message))
        if known is not None and known[0] is message:
            return known[1]
        size = len(json.dumps(message)) + MESSAGE_OVERHEAD_CHARS
        self._sizes[id(message)] = (message, size)
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            self._calls[call.get("id") or ""] = (function.get("name") or "", _args(function))
        return size

    def _size_of_tools(self, tools: list[ToolSpec]) -> int:
        return sum(self._size(tool) for tool in tools)

    def _stub(self, message: ChatMessage) -> ChatMessage:
        known = self._stubs.get(id(message))
        if known is not None and known[0] is message:
            return known[1]
        stub = stub_message(message, self._calls)
        self._stubs[id(message)] = (message, stub)
        return stub


@dataclass(frozen=True)
class _Layout:
    """A request's parts: system prompt, history, the prompt, then the run's steps."""

    head: list[ChatMessage]
    earlier_left_out: int
    history: list[ChatMessage]
    prompt: list[ChatMessage]
    steps: list[list[ChatMessage]]

    @classmethod
    def of(cls, messages: list[ChatMessage], prompt: ChatMessage | None = None) -> _Layout:
        start = 1 if messages and messages[0].get("role") == "system" else 0
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        known = [i for i in users if messages[i] is prompt]
        prompt_at = known[0] if known else users[-1] if users else len(messages)
        history = messages[start:prompt_at]
        earlier = _note_count(history[0]) if history else None
        if earlier is not None:
            history = history[1:]
        steps: list[list[ChatMessage]] = []
        for message in messages[prompt_at + 1 :]:
            if message.get("role") == "assistant" or not steps:
                steps.append([])
            steps[-1].append(message)
        return cls(
            head=messages[:start],
            earlier_left_out=earlier or 0,
            history=history,
            prompt=messages[prompt_at : prompt_at + 1],
            steps=steps,
        )


def stub_message(
    message: ChatMessage, calls: dict[str, tuple[str, dict[str, Any]]] | None = None
) -> ChatMessage:
    """The message with its long parts replaced by a line that says what they were and how to
    get them again; the message itself when nothing in it is long."""
    if message.get("role") == "tool":
        content = message.get("content")
        if not isinstance(content, str) or len(content) <= STUB_MIN_CHARS:
            return message
        name, args = (calls or {}).get(message.get("tool_call_id") or "", ("", {}))
        return {**message, "content": json.dumps({"leftOut": _stub_line(name, args, content)})}
    if message.get("role") == "assistant" and message.get("tool_calls"):
        calls_out = [_stub_call(call) for call in message["tool_calls"]]
        if all(new is old for new, old in zip(calls_out, message["tool_calls"], strict=True)):
            return message
        return {**message, "tool_calls": calls_out}
    return message


def _stub_line(name: str, args: dict[str, Any], content: str) -> str:
    size = f"{len(content):,} characters"
    path = args.get("path") if isinstance(args.get("path"), str) else None
    if name == "read_file" and path:
        return f"read_file {path}: {size}, left out; read it again if you need it"
    if name == "run_command" and isinstance(args.get("command"), str):
        command = args["command"][:200]
        return f"run_command `{command}`: {size} of output, left out; run it again if you need it"
    if name == "list_files":
        return f"list_files {path or '.'}: {size}, left out; list it again if you need it"
    what = f"{name} {path}" if name and path else name or "a tool result"
    return f"{what}: {size}, left out; call it again if you need it"


def _stub_call(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call with its long string arguments (a written file's content) left out."""
    function = call.get("function") or {}
    raw = function.get("arguments") or ""
    if len(raw) <= STUB_MIN_CHARS:
        return call
    args = _args(function)
    if not args:
        return call
    path = args.get("path") if isinstance(args.get("path"), str) else None
    again = f"; read_file {path} to see the file" if path else ""
    shortened = {
        key: f"[{len(value):,} characters, left out{again}]"
        if isinstance(value, str) and len(value) > STUB_MIN_CHARS // 2
        else value
        for key, value in args.items()
    }
    return {**call, "function": {**function, "arguments": json.dumps(shortened)}}


def _args(function: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
