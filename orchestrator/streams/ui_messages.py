"""A run's events as the Vercel AI SDK's UI message stream chunks (protocol v1, DESIGN section 19).

A pure translator, fed the same items the SSE stream sends (the log's entries, or the state the
replay plan built from the database) in order, one at a time:

    status        -> data-status (one part, id "status", replaced as the run moves on)
    delta         -> text-start (once per text part), text-delta
    tool_call     -> text-end (if a text part is open), tool-input-available
    tool_result   -> tool-output-available
    fragment      -> data-fragment;  check -> data-check (one per phase);  any other `x` -> data-x
    error         -> error
    done          -> text-end, finish-step, data-status, then finish (abort for a cancel)

A step is a model call, as far as the log shows one: it starts with the run, and again with the
first delta after tool results (the agent calls the model again only once its tools answered,
and runs one call's tools one after the other, call and result, so a tool call after a result
may be the same step's). A model call that writes no text joins the step before: the log has no
step marker.
Chunks carry only the SDK's keys (its `uiMessageChunkSchema`); tests/node checks them.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.streams.replay import Item

Chunk = dict[str, Any]

# Our final statuses as the SDK's finish reasons.
_FINISH_REASON = {"COMPLETE": "stop", "FAILED": "error"}


class UiMessageTranslator:
    """The chunks of one client's stream; holds what an open text part and step need."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.started = False
        self.text_id: str | None = None  # the open text part's id
        self.tools_answered = False  # a tool result since the step began: new text is a new step
        self.text_parts = 0
        self.finished = False

    def resume_after(self, items: list[Item]) -> None:
        """Take the state a client that already received `items` holds, without output."""
        for item in items:
            self.chunks(item)

    def chunks(self, item: Item) -> list[Chunk]:
        """The chunks for one event, in the order a client applies them."""
        if self.finished:
            return []
        data: dict[str, Any] = json.loads(item.data)
        out: list[Chunk] = []
        if not self.started:
            self.started = True
            out += [{"type": "start", "messageId": self.message_id}, {"type": "start-step"}]
        kind = item.type
        if kind == "delta" and self.tools_answered:
            out += self._close_text()
            out += [{"type": "finish-step"}, {"type": "start-step"}]
            self.tools_answered = False
        if kind == "delta":
            if not data.get("text"):
                return out
            if self.text_id is None:
                self.text_parts += 1
                self.text_id = f"text-{item.id or self.message_id}-{self.text_parts}"
                out.append({"type": "text-start", "id": self.text_id})
            out.append({"type": "text-delta", "id": self.text_id, "delta": data["text"]})
        elif kind == "tool_call":
            out += self._close_text()
            out.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": str(data.get("id")),
                    "toolName": str(data.get("name")),
                    "input": data.get("args"),
                }
            )
        elif kind == "tool_result":
            out.append(
                {
                    "type": "tool-output-available",
                    "toolCallId": str(data.get("id")),
                    "output": data.get("result"),
                }
            )
            self.tools_answered = True
        elif kind == "error":
            out.append({"type": "error", "errorText": str(data.get("error") or "The run failed")})
        elif kind == "done":
            out += self._finish(str(data.get("status")))
        elif kind == "status":
            out.append(_data("status", {"status": data.get("status")}))
        elif kind == "check":
            # One part per phase (build, render), replaced as it goes from running to a verdict.
            out.append(_data("check", data, part=f"check-{data.get('phase')}"))
        else:
            # The part carries the event's own payload: {"fragment": {...}} becomes the
            # fragment itself, as a client of data-fragment expects.
            payload = data[kind] if set(data) == {kind} else data
            out.append(_data(kind, payload))
        return out

    def _close_text(self) -> list[Chunk]:
        if self.text_id is None:
            return []
        closed = {"type": "text-end", "id": self.text_id}
        self.text_id = None
        return [closed]

    def _finish(self, status: str) -> list[Chunk]:
        self.finished = True
        out = [*self._close_text(), {"type": "finish-step"}, _data("status", {"status": status})]
        if status == "CANCELLED":
            return [*out, {"type": "abort", "reason": "cancelled"}]
        return [*out, {"type": "finish", "finishReason": _FINISH_REASON.get(status, "other")}]


def _data(name: str, payload: Any, *, part: str | None = None) -> Chunk:
    """A data part; its id (`part`, else the name) makes a later one replace it in the client's
    message."""
    return {"type": f"data-{name}", "id": part or name, "data": payload}
