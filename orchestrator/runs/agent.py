"""The agent loop on one page: ask the model, run the tools it calls, repeat until it finishes.

    for step in range(max_steps):
        reply = provider.stream(messages, tools)      # text and tool calls, streamed
        if no tool calls: stop
        for call in reply.tool_calls:
            result = workspace.call(call)             # a tool error is a result, never a crash
        if a call was finish: stop, unless on_finish() has more to say (failed checks)

No database, Redis or Celery here: collaborators come in as arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.providers.base import (
    Cancelled,
    ChatMessage,
    Provider,
    Restart,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
)
from orchestrator.runs.tools import TOOL_NAMES, TOOL_SPECS, ToolError, Workspace, parse_arguments
from orchestrator.sandboxes.base import Sandbox
from orchestrator.stop import Stop
from orchestrator.streams.events import DeltaEvent, Event, ToolCallEvent, ToolResultEvent


@dataclass
class Outcome:
    text: str
    tool_calls: list[dict[str, Any]]
    files: dict[str, str]
    title: str | None
    summary: str | None
    steps: int
    stop_reason: str  # "finish" | "no_tool_call" | "max_steps"


@dataclass
class _PendingCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def run_agent(
    messages: list[ChatMessage],
    provider: Provider,
    sandbox: Sandbox,
    emit: Callable[[Event], None],
    stop: Stop,
    *,
    max_steps: int = 25,
    tools: list[ToolSpec] = TOOL_SPECS,
    on_finish: Callable[[int], str | None] | None = None,
) -> Outcome:
    """`on_finish(steps_left)`, when given, is asked each time the model finishes: a message to
    go on with (checks that failed: DESIGN section 16) as the next `user` turn, or None to stop."""
    conversation = list(messages)
    workspace = Workspace(sandbox)
    text: list[str] = []
    records: list[dict[str, Any]] = []
    finish_args: dict[str, Any] | None = None
    stop_reason = "max_steps"
    steps = 0

    for step in range(max_steps):
        if stop.requested():
            raise Cancelled()
        steps = step + 1
        step_text: list[str] = []
        pending: dict[int, _PendingCall] = {}
        for delta in provider.stream(conversation, tools, stop):
            if isinstance(delta, TextDelta):
                step_text.append(delta.text)
                emit(DeltaEvent(delta.text))
            elif isinstance(delta, ToolCallDelta):
                call = pending.setdefault(delta.index, _PendingCall())
                call.id = call.id or delta.id
                call.name = call.name or (delta.name or "")
                call.arguments.append(delta.arguments)
            elif isinstance(delta, Restart):
                # A retry sends the whole answer again: pieces of a cut attempt must not stay.
                pending.clear()
        text.extend(step_text)

        calls = [pending[i] for i in sorted(pending)]
        for position, call in enumerate(calls):
            call.id = call.id or f"call_{step}_{position}"
        assistant: ChatMessage = {"role": "assistant", "content": "".join(step_text) or None}
        if calls:
            assistant["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": "".join(c.arguments)},
                }
                for c in calls
            ]
        conversation.append(assistant)
        finished = None if calls else "no_tool_call"

        for call in calls:  # none when the model answered without a tool call
            if stop.requested():
                raise Cancelled()
            assert call.id is not None
            args, refusal = _parse(call)
            record: dict[str, Any] = {"id": call.id, "name": call.name, "args": args}
            records.append(record)
            emit(ToolCallEvent(call.id, call.name, args))
            if refusal is not None:
                result = refusal
            elif call.name == "finish":
                result, finish_args, finished = {"success": True}, args, "finish"
            else:
                result = workspace.call(call.name, args)
            record["result"] = result
            emit(ToolResultEvent(call.id, result))
            conversation.append(
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
            )
        if finished is not None:
            stop_reason = finished
            going_on = on_finish(max_steps - steps) if on_finish is not None else None
            if going_on is None:
                break
            conversation.append({"role": "user", "content": going_on})
            stop_reason = "max_steps"

    return Outcome(
        text="".join(text),
        tool_calls=records,
        files=dict(workspace.written),
        title=_clean(finish_args, "title"),
        summary=_clean(finish_args, "summary"),
        steps=steps,
        stop_reason=stop_reason,
    )


def _parse(call: _PendingCall) -> tuple[Any, dict[str, Any] | None]:
    """The call's arguments, and the error to give the model instead of running it, if any."""
    raw = "".join(call.arguments)
    if call.name not in TOOL_NAMES:
        return _lenient(raw), {"error": f"unknown tool: {call.name or '(none)'}"}
    try:
        args = parse_arguments(raw)
    except ToolError as exc:
        return raw, {"error": str(exc)}
    if call.name == "finish" and not (
        isinstance(args.get("title"), str) and isinstance(args.get("summary"), str)
    ):
        return args, {"error": "finish needs 'title' and 'summary' strings"}
    return args, None


def _lenient(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _clean(args: dict[str, Any] | None, key: str) -> str | None:
    value = (args or {}).get(key)
    return value.strip()[:200] if isinstance(value, str) and value.strip() else None
