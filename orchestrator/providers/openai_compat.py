"""An OpenAI-compatible chat-completions endpoint, streamed through the process's asyncio loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import openai

from orchestrator.providers import aioloop
from orchestrator.providers.base import (
    Cancelled,
    ChatMessage,
    Delta,
    Finish,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from orchestrator.providers.handoff import END, WAKE, Handoff
from orchestrator.providers.retry import IncompleteStream, LLMReadTimeout
from orchestrator.settings import ProviderConfig
from orchestrator.stop import Stop

# How often a consumer waiting for the next chunk looks at its Stop unwoken: a cancel wakes it
# (`on_request`), so this is only for the stops found by looking (the deadline, a lost lease).
WOKEN_POLL_SECONDS = 0.5


class OpenAICompatProvider:
    def __init__(
        self,
        config: ProviderConfig,
        *,
        read_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_connections: int = 1000,
        max_output_tokens: int = 8192,
    ) -> None:
        self.name = config.name
        self.model = config.model
        # DESIGN section 17: what a request may hold is the context minus the reply's room.
        self.context_tokens = config.context_tokens
        self.max_output_tokens = max_output_tokens
        self._config = config
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        # One client per provider per process, its pool sized to the runs the process holds.
        self._max_connections = max_connections
        self._client: openai.AsyncOpenAI | None = None

    def stream(
        self, messages: list[ChatMessage], tools: list[ToolSpec], stop: Stop
    ) -> Iterator[Delta]:
        inbox = Handoff()
        unsubscribe = stop.on_request(lambda: inbox.put(WAKE))
        future = aioloop.submit(self._pump(messages, tools, inbox))
        try:
            while True:
                items = inbox.take(timeout=WOKEN_POLL_SECONDS)
                if not items and stop.requested():
                    raise Cancelled()
                for item in items:
                    if item is WAKE:
                        if stop.requested():
                            raise Cancelled()
                        continue
                    if item is END:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item  # type: ignore[misc]
                    if stop.requested():
                        raise Cancelled()
        finally:
            # Cancelling the task closes the HTTP response: the server sees the connection go.
            future.cancel()
            unsubscribe()

    def _client_in_loop(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self._config.base_url,
                api_key=self._config.api_key,
                max_retries=0,  # tenacity owns retries; two layers would multiply attempts
                http_client=openai.DefaultAsyncHttpxClient(
                    limits=httpx2.Limits(
                        max_connections=self._max_connections,
                        max_keepalive_connections=self._max_connections,
                    ),
                ),
                timeout=openai.Timeout(
                    self._read_timeout, connect=self._connect_timeout, read=self._read_timeout
                ),
            )
        return self._client

    async def _pump(
        self, messages: list[ChatMessage], tools: list[ToolSpec], inbox: Handoff
    ) -> None:
        try:
            client = self._client_in_loop()
            # The conversation and tools go in `extra_body`, which the SDK sends as given: its
            # typed transform walks every message and tool schema, and cost a tenth of a busy
            # worker's CPU once per request (README, Capacity). Ours are plain JSON already.
            body: dict[str, Any] = {"messages": messages}
            if tools:
                body["tools"] = tools
            kwargs: dict[str, Any] = {
                "model": self.model,
                "messages": [],
                "stream": True,
                "max_tokens": self.max_output_tokens,
                "stream_options": {"include_usage": True},
                "extra_body": body,
            }
            finished = False
            started = False
            try:
                # Until the response starts: the request's whole budget.
                async with asyncio.timeout(self._read_timeout + self._connect_timeout) as watch:
                    # The raw lines, parsed here: the SDK's chunk objects cost more CPU than the
                    # rest of a chunk's way to the client (README, Capacity). Status errors are
                    # still the SDK's (raised before the body is read).
                    async with client.chat.completions.with_streaming_response.create(
                        **kwargs
                    ) as response:
                        started = True
                        # From here the HTTP client's read timeout (LLM_READ_TIMEOUT, per read
                        # of the socket) is the watchdog: no timer per chunk at all.
                        watch.reschedule(None)
                        async for line in response.iter_lines():
                            if not line.startswith("data:"):
                                continue
                            data = line[5:].strip()
                            if data == "[DONE]":
                                break
                            chunk = json.loads(data)
                            if isinstance(chunk, dict) and chunk.get("error"):
                                raise openai.APIError(
                                    str(chunk["error"]), response.http_request, body=chunk
                                )
                            for delta in _deltas(chunk):
                                finished = finished or isinstance(delta, Finish)
                                inbox.put(delta)
            except (TimeoutError, httpx2.TimeoutException):
                if not started:
                    raise
                raise LLMReadTimeout(
                    f"no data from {self.name} for {self._read_timeout:g}s"
                ) from None
            except httpx2.TransportError as exc:
                if not started:
                    raise
                # The body was cut (the SDK's own iterator reported this as an early end).
                raise IncompleteStream(f"{self.name} cut the stream: {exc}") from exc
            if not finished:
                raise IncompleteStream(f"{self.name} ended the stream before finishing")
            inbox.put(END)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            inbox.put(exc)


def _deltas(chunk: Any) -> Iterator[Delta]:
    """The deltas of one `chat.completion.chunk`, read from its JSON."""
    usage = chunk.get("usage")
    if usage:
        details = usage.get("prompt_tokens_details") or {}
        yield Usage(
            usage.get("prompt_tokens") or 0,
            usage.get("completion_tokens") or 0,
            (details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
        )
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta")
        if delta:
            if delta.get("content"):
                yield TextDelta(delta["content"])
            for call in delta.get("tool_calls") or []:
                function = call.get("function")
                yield ToolCallDelta(
                    index=call.get("index") or 0,
                    id=call.get("id"),
                    name=function.get("name") if function else None,
                    arguments=(function.get("arguments") or "") if function else "",
                )
        if choice.get("finish_reason"):
            yield Finish(choice["finish_reason"])
