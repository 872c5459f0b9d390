"""An OpenAI-compatible chat-completions endpoint, streamed through the process's asyncio loop."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable, Iterator
from typing import Any

import openai
from openai._constants import DEFAULT_CONNECTION_LIMITS

from orchestrator.providers import aioloop
from orchestrator.providers.base import (
    Cancelled,
    Delta,
    Finish,
    Message,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from orchestrator.providers.retry import IncompleteStream, LLMReadTimeout
from orchestrator.settings import ProviderConfig

_END = object()
_WAKE = object()
# How often a consumer waiting for the next chunk looks at the cancel check; with a check that
# can wake it (`on_trip`, the runner's), only for the deadline.
CANCEL_POLL_SECONDS = 0.02
WOKEN_POLL_SECONDS = 0.5


class OpenAICompatProvider:
    supports_tools = True

    def __init__(
        self,
        config: ProviderConfig,
        *,
        read_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_connections: int = 1000,
    ) -> None:
        self.name = config.name
        self.model = config.model
        self._config = config
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        # One client per provider per process, its pool sized to the runs the process holds.
        self._max_connections = max_connections
        self._client: openai.AsyncOpenAI | None = None

    def stream(
        self, messages: list[Message], tools: list[ToolSpec], cancelled: Callable[[], bool]
    ) -> Iterator[Delta]:
        inbox: queue.Queue[object] = queue.Queue()
        subscribe = getattr(cancelled, "on_trip", None)
        unsubscribe = subscribe(lambda: inbox.put(_WAKE)) if callable(subscribe) else None
        poll = WOKEN_POLL_SECONDS if unsubscribe is not None else CANCEL_POLL_SECONDS
        future = aioloop.submit(self._pump(messages, tools, inbox))
        try:
            while True:
                try:
                    item = inbox.get(timeout=poll)
                except queue.Empty:
                    if cancelled():
                        raise Cancelled() from None
                    continue
                if item is _WAKE:
                    if cancelled():
                        raise Cancelled()
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
                if cancelled():
                    raise Cancelled()
        finally:
            # Cancelling the task closes the HTTP response: the server sees the connection go.
            future.cancel()
            if unsubscribe is not None:
                unsubscribe()

    def _client_in_loop(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self._config.base_url,
                api_key=self._config.api_key,
                max_retries=0,  # tenacity owns retries; two layers would multiply attempts
                http_client=openai.DefaultAsyncHttpxClient(
                    limits=openai_limits(
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
        self, messages: list[Message], tools: list[ToolSpec], inbox: queue.Queue[object]
    ) -> None:
        try:
            client = self._client_in_loop()
            kwargs: dict[str, Any] = {
                "model": self.model,
                "messages": messages,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            if tools:
                kwargs["tools"] = tools
            stream = await asyncio.wait_for(
                client.chat.completions.create(**kwargs), self._read_timeout + self._connect_timeout
            )
            finished = False
            async with stream:
                chunks = stream.__aiter__()
                while True:
                    try:
                        chunk = await asyncio.wait_for(anext(chunks), self._read_timeout)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise LLMReadTimeout(
                            f"no data from {self.name} for {self._read_timeout:g}s"
                        ) from None
                    for delta in _deltas(chunk):
                        finished = finished or isinstance(delta, Finish)
                        inbox.put(delta)
            if not finished:
                raise IncompleteStream(f"{self.name} ended the stream before finishing")
            inbox.put(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            inbox.put(exc)


def openai_limits(*, max_connections: int, max_keepalive_connections: int) -> Any:
    """The SDK's own pool limits type (it vendors its HTTP client), sized to the process."""
    return type(DEFAULT_CONNECTION_LIMITS)(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=DEFAULT_CONNECTION_LIMITS.keepalive_expiry,
    )


def _deltas(chunk: Any) -> Iterator[Delta]:
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        yield Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)
    for choice in chunk.choices or []:
        delta = choice.delta
        if delta is not None:
            if delta.content:
                yield TextDelta(delta.content)
            for call in delta.tool_calls or []:
                function = call.function
                yield ToolCallDelta(
                    index=call.index,
                    id=call.id,
                    name=function.name if function else None,
                    arguments=(function.arguments or "") if function else "",
                )
        if choice.finish_reason:
            yield Finish(choice.finish_reason)
