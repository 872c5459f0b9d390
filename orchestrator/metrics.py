"""Prometheus metrics (DESIGN section 11): what operators of web and worker pools look at.

Conventions of prometheus-client: counters end in `_total` (the library adds it), durations are
seconds, and where processes fork (gunicorn's workers, Celery's prefork children) every process
writes its values to files under PROMETHEUS_MULTIPROC_DIR, which the scraping process reads
(`scrape_registry`). Gauges say how they add up across processes (`multiprocess_mode`). Values read
from Redis at scrape time (the queue length, the breakers) are custom collectors, asked by the
process that answers the scrape only.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from orchestrator.settings import environ

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# -- runs (worker side) ----------------------------------------------------------------------
RUNS_STARTED = Counter("appforge_runs_started", "Runs a worker claimed and started")
RUNS = Counter("appforge_runs", "Runs ended, by final status", ["status"])
RUNS_IN_PROGRESS = Gauge(
    "appforge_runs_in_progress", "Runs executing now", multiprocess_mode="livesum"
)
RUN_SECONDS = Histogram(
    "appforge_run_seconds", "From a worker's claim to the run's end", buckets=_SECONDS
)
FIRST_DELTA_SECONDS = Histogram(
    "appforge_first_delta_seconds",
    "From a worker's claim to the first text delta of the run",
    buckets=_SECONDS,
)
CANCEL_SECONDS = Histogram(
    "appforge_cancel_seconds",
    "From the cancel request (DELETE) to the run ending CANCELLED",
    buckets=_FAST,
)
TOKENS = Counter("appforge_tokens", "Tokens the providers reported", ["direction"])
PROVIDER_CALLS = Counter(
    "appforge_provider_calls",
    "Calls to a provider, by outcome (ok, error, skipped: its circuit was open)",
    ["provider", "outcome"],
)
PROVIDER_TOKENS = Counter(
    "appforge_provider_tokens",
    "Tokens a provider reported, by kind (prompt, completion, cached: served from its cache)",
    ["provider", "kind"],
)
CONTEXT_RETRIES = Counter(
    "appforge_context_retries",
    "Requests a provider refused as longer than its context, asked again smaller",
    ["provider"],
)
FALLBACKS = Counter("appforge_fallbacks", "Runs a provider after the first one served", ["reason"])

# -- web side --------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "appforge_http_requests", "HTTP requests by route (URL rule) and status", ["route", "status"]
)
PROMPTS_ACCEPTED = Counter("appforge_prompts_accepted", "Prompts that became a queued run")
SSE_STREAMS_OPEN = Gauge(
    "appforge_sse_streams_open", "Event streams open now", multiprocess_mode="livesum"
)


@dataclass
class RunMetrics:
    """One run's measurements, from its claim to its end."""

    started: float = field(default_factory=time.monotonic)
    first_delta: float | None = None

    def __post_init__(self) -> None:
        RUNS_STARTED.inc()
        RUNS_IN_PROGRESS.inc()

    def delta(self) -> None:
        if self.first_delta is None:
            self.first_delta = time.monotonic() - self.started
            FIRST_DELTA_SECONDS.observe(self.first_delta)

    def ended(
        self,
        status: str | None,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        fallback_reason: str | None = None,
        cancel_seconds: float | None = None,
    ) -> None:
        RUNS_IN_PROGRESS.dec()
        if status is None:  # not ours any more: another worker or the reaper ends it
            return
        RUNS.labels(status=status).inc()
        RUN_SECONDS.observe(time.monotonic() - self.started)
        TOKENS.labels(direction="in").inc(prompt_tokens)
        TOKENS.labels(direction="out").inc(completion_tokens)
        if fallback_reason is not None:
            reason = "circuit_open" if fallback_reason == "circuit open" else "error"
            FALLBACKS.labels(reason=reason).inc()
        if cancel_seconds is not None:
            CANCEL_SECONDS.observe(cancel_seconds)


def run_ended(
    run: RunMetrics, status: str | None, chain: Any, client: redis.Redis, message_id: str
) -> None:
    """A run's end, with what its provider chain and its cancel flag tell."""
    from orchestrator.cancel_flags import FLAG_TTL_SECONDS, flag_key

    cancel = None
    if status == "CANCELLED":
        cancel = cancel_seconds(client, flag_key(message_id), FLAG_TTL_SECONDS)
    run.ended(
        str(status) if status is not None else None,
        prompt_tokens=chain.prompt_tokens,
        completion_tokens=chain.completion_tokens,
        fallback_reason=chain.metadata().get("fallbackReason"),
        cancel_seconds=cancel,
    )


def provider_call(provider: str, outcome: str) -> None:
    PROVIDER_CALLS.labels(provider=provider, outcome=outcome).inc()


def provider_tokens(provider: str, prompt: int, completion: int, cached: int) -> None:
    PROVIDER_TOKENS.labels(provider=provider, kind="prompt").inc(prompt)
    PROVIDER_TOKENS.labels(provider=provider, kind="completion").inc(completion)
    PROVIDER_TOKENS.labels(provider=provider, kind="cached").inc(cached)


def context_retry(provider: str) -> None:
    CONTEXT_RETRIES.labels(provider=provider).inc()


def cancel_seconds(client: redis.Redis, flag_key: str, flag_ttl: float) -> float | None:
    """How long ago the cancel flag was set: it was set with `flag_ttl`, so its age is known."""
    try:
        left = client.pttl(flag_key)
    except redis.RedisError:
        return None
    if not isinstance(left, int) or left < 0:
        return None
    return max(0.0, flag_ttl - left / 1000)


def counted_stream(body: Iterable[str]) -> Iterator[str]:
    """An SSE body, counted in appforge_sse_streams_open while a client holds it."""
    SSE_STREAMS_OPEN.inc()
    try:
        yield from body
    finally:
        SSE_STREAMS_OPEN.dec()


# -- scraping --------------------------------------------------------------------------------


class QueueLength(Collector):
    """appforge_queue_length: runs waiting in the broker's list, read when scraped."""

    def __init__(self, client: redis.Redis, queue: str) -> None:
        self.client = client
        self.queue = queue

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "appforge_queue_length", "Runs waiting in the queue for a worker", labels=["queue"]
        )
        try:
            family.add_metric([self.queue], float(self.client.llen(self.queue)))
        except redis.RedisError as exc:
            log.warning("metrics: queue length unavailable: %s", exc)
        yield family


class CircuitState(Collector):
    """appforge_circuit_open{provider}: 1 while runs skip that provider (the shared breaker)."""

    def __init__(self, breaker: Any, providers: Sequence[str]) -> None:
        self.breaker = breaker
        self.providers = list(providers)

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "appforge_circuit_open",
            "1 while that provider's circuit breaker is open",
            labels=["provider"],
        )
        for name in self.providers:
            family.add_metric([name], 1.0 if self.breaker.is_open(name) else 0.0)
        yield family


class DeadProcesses(Collector):
    """Before each scrape, forgets the live gauges of processes of this machine that are gone.

    A prefork child killed outright (the OOM killer, SIGKILL) never says so; without this its
    runs would stay "in progress" in appforge_runs_in_progress until the worker restarts.
    """

    def collect(self) -> Iterable[Metric]:
        folder = multiprocess_dir()
        if folder:
            for path in Path(folder).glob("gauge_live*_*.db"):
                pid = path.stem.rsplit("_", 1)[-1]
                if pid.isdigit() and not _alive(int(pid)):
                    process_dead(int(pid))
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Default(Collector):
    """The process's own default registry (single-process mode), inside a scrape registry."""

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return environ().get(MULTIPROC_ENV) or None


def scrape_registry(*extra: Collector) -> CollectorRegistry:
    """What one scrape answers: every process's files in multiprocess mode, else this process."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        registry.register(DeadProcesses())  # first: collectors run in the order registered
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Default())
    for collector in extra:
        registry.register(collector)
    return registry


def render(*extra: Collector) -> bytes:
    return generate_latest(scrape_registry(*extra))


def fresh_multiprocess_dir(path: str | Path) -> None:
    """Empties the directory before the processes that write to it start (the docs' rule)."""
    folder = Path(path)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def process_dead(pid: int) -> None:
    """A forked child exited: its live gauges (runs in progress, streams open) no longer count."""
    if multiprocess_dir():
        mark_process_dead(pid)  # type: ignore[no-untyped-call]
