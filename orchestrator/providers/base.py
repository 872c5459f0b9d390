"""The provider seam: one method that yields a stream of deltas for one LLM call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.stop import Stop

ChatMessage = dict[str, Any]
ToolSpec = dict[str, Any]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call; pieces with the same index belong to the same call."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # The part of the prompt the provider served from its prompt cache, when it says so.
    cached_tokens: int = 0


@dataclass(frozen=True)
class Finish:
    reason: str | None


@dataclass(frozen=True)
class Restart:
    """The step starts again (a retry, or the next provider): drop every piece received so far.

    Only a provider chain yields it, and only before any text reached clients.
    """


Delta = TextDelta | ToolCallDelta | Usage | Finish | Restart


class Cancelled(Exception):
    """The run was cancelled while waiting on the provider."""


class Provider(Protocol):
    """One LLM endpoint. `stream` gives up promptly (raising Cancelled) once a stop is requested."""

    name: str
    model: str

    def stream(
        self, messages: list[ChatMessage], tools: list[ToolSpec], stop: Stop
    ) -> Iterator[Delta]: ...


class Fitter(Protocol):
    """Fits one request to one provider's context (runs/budget.py); the chain sends the result.

    `fit` answers the messages to send and their estimated tokens; `tighter` asks for a smaller
    request after the provider said the last one was too long. `observe` corrects the estimate
    with the prompt tokens the provider reported for a request of that estimate.
    """

    def fit(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec],
        provider: Provider,
        *,
        tighter: bool,
    ) -> tuple[list[ChatMessage], int]: ...

    def observe(self, provider: Provider, estimated: int, reported: int) -> None: ...
