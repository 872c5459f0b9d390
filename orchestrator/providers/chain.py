"""Primary then fallback: retries with tenacity, and fallback only before text reached clients."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt

from orchestrator import metrics
from orchestrator.contract import TokenUsage
from orchestrator.errors import ProviderError
from orchestrator.providers.base import (
    Cancelled,
    ChatMessage,
    Delta,
    Fitter,
    Provider,
    Restart,
    TextDelta,
    ToolSpec,
    Usage,
)
from orchestrator.providers.breaker import Breaker, Gate, counts_against
from orchestrator.providers.retry import BackoffWait, is_context_overflow, is_transient
from orchestrator.stop import Stop

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    provider: str
    model: str
    error: str | None = None


@dataclass
class ProviderChain:
    """The provider chain as one run sees it: which provider served it, attempts, token usage.

    Implements the Provider protocol, so the agent loop never knows there is more than one.
    """

    providers: Sequence[Provider]
    attempts_per_provider: int = 3
    wait: Callable[..., float] = field(default_factory=BackoffWait)
    attempts: list[Attempt] = field(default_factory=list)
    served_by: Provider | None = None
    text_sent: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    name: str = "chain"
    # The circuit breaker shared by every worker (providers/breaker.py); None: no breaker.
    breaker: Breaker | None = None
    # Why a provider after the first served the run: "circuit open", or the first one's error.
    fallback_reason: str | None = None
    model: str = ""
    # What each provider is sent, fitted to its context (runs/budget.py); None: as given.
    fitter: Fitter | None = None
    cached_tokens: int = 0
    # Requests the providers answered in full, and the largest prompt among them (tokens).
    requests: int = 0
    max_request_tokens: int = 0
    # Attempts made for the step being streamed: every one after the first begins with Restart.
    _step_attempts: int = field(default=0, init=False, repr=False)

    def stream(
        self, messages: list[ChatMessage], tools: list[ToolSpec], stop: Stop
    ) -> Iterator[Delta]:
        # Once text reached clients the run stays with the provider that wrote it.
        candidates = [self.served_by] if self.text_sent and self.served_by else self.providers
        self._step_attempts = 0
        last: BaseException | None = None
        for index, provider in enumerate(candidates):
            # The breaker only decides whether to skip to the next one: the last is always tried.
            gate = self._gate(provider, last=index == len(candidates) - 1)
            if gate is Gate.OPEN:
                self.fallback_reason = "circuit open"
                metrics.provider_call(provider.name, "skipped")
                log.info("provider %s skipped: its circuit breaker is open", provider.name)
                continue
            attempts = 1 if gate is Gate.PROBE else self.attempts_per_provider
            # A request the provider found too long is asked again once, smaller (section 17).
            for tighter in (False, True):
                try:
                    yield from self._with_retries(
                        provider, messages, tools, stop, attempts, tighter=tighter
                    )
                    return
                except Cancelled:
                    raise
                except _AfterText as exc:
                    raise ProviderError(
                        f"{provider.name} failed after the reply had started: {exc.__cause__}"
                    ) from exc.__cause__
                except Exception as exc:
                    last = exc
                    if tighter or self.fitter is None or not is_context_overflow(exc):
                        break
                    metrics.context_retry(provider.name)
                    log.info("provider %s found the request too long", provider.name)
            self.fallback_reason = f"{provider.name}: {type(last).__name__}: {last}"[:300]
            log.warning("provider %s gave up: %s", provider.name, last)
        raise ProviderError() from last

    def _with_retries(
        self,
        provider: Provider,
        messages: list[ChatMessage],
        tools: list[ToolSpec],
        stop: Stop,
        attempts: int,
        *,
        tighter: bool = False,
    ) -> Iterator[Delta]:
        estimate = 0
        if self.fitter is not None:
            messages, estimate = self.fitter.fit(messages, tools, provider, tighter=tighter)

        def sleep(seconds: float) -> None:
            _sleep_unless_cancelled(seconds, stop)

        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=self.wait,
            retry=retry_if_exception(lambda e: is_transient(e) and not isinstance(e, _AfterText)),
            sleep=sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                record = Attempt(provider.name, provider.model)
                self.attempts.append(record)
                if self._step_attempts:
                    # The attempt before may have sent pieces of a tool call (no text: that is
                    # never retried); this one sends the whole answer again.
                    yield Restart()
                self._step_attempts += 1
                started = False
                answered = False
                reported = 0
                try:
                    for delta in provider.stream(messages, tools, stop):
                        if not answered:
                            answered = True
                            self._answered(provider)
                        if isinstance(delta, Usage):
                            self._count(provider, delta, estimate)
                            reported = max(reported, delta.prompt_tokens)
                            continue
                        if isinstance(delta, TextDelta) and not started:
                            started = True
                            self.text_sent = True
                            self.served_by = provider
                        yield delta
                except (Cancelled, GeneratorExit):
                    raise
                except Exception as exc:
                    record.error = f"{type(exc).__name__}: {exc}"[:300]
                    metrics.provider_call(provider.name, "error")
                    if self.breaker is not None and counts_against(exc):
                        self.breaker.failure(provider.name)
                    if started:
                        raise _AfterText() from exc
                    raise
                if not answered:
                    self._answered(provider)
                metrics.provider_call(provider.name, "ok")
                self.served_by = provider
                self.requests += 1
                self.max_request_tokens = max(self.max_request_tokens, reported or estimate)

    def _count(self, provider: Provider, usage: Usage, estimate: int) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.cached_tokens += usage.cached_tokens
        metrics.provider_tokens(
            provider.name, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
        )
        if self.fitter is not None:
            self.fitter.observe(provider, estimate, usage.prompt_tokens)

    def _gate(self, provider: Provider, *, last: bool) -> Gate:
        if self.breaker is None:
            return Gate.CLOSED
        gate = self.breaker.allow(provider.name)
        return Gate.CLOSED if last and gate is Gate.OPEN else gate

    def _answered(self, provider: Provider) -> None:
        # The provider answers: that closes its breaker (or keeps it closed).
        if self.breaker is not None:
            self.breaker.success(provider.name)

    def metadata(self) -> dict[str, Any]:
        served = self.served_by
        return {
            "provider": served.name if served else None,
            "model": served.model if served else None,
            "attempts": len(self.attempts),
            "attemptLog": [a.__dict__ for a in self.attempts],
            "fallbackReason": None if served in (None, self.providers[0]) else self.fallback_reason,
            "usage": TokenUsage(
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                cached_tokens=self.cached_tokens,
                requests=self.requests,
                max_request_tokens=self.max_request_tokens,
            ).wire(),
        }


class _AfterText(Exception):
    """A failure after text reached clients: never retried, never handed to another provider."""


def _sleep_unless_cancelled(seconds: float, stop: Stop) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stop.requested():
            raise Cancelled()
        time.sleep(min(0.05, left))
