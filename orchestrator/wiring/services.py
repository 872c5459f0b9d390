"""Builds a worker process's collaborators from Settings (called by the Celery edge only)."""

from __future__ import annotations

import logging

from models import make_engine, make_sessionmaker
from orchestrator.checks.browser import Browser, find_chromium
from orchestrator.checks.checker import Checker
from orchestrator.process_threads import PROCESS
from orchestrator.providers.base import Provider
from orchestrator.providers.breaker import Breaker, BreakerConfig, breaker_client
from orchestrator.providers.chain import ProviderChain
from orchestrator.providers.demo import DemoProvider
from orchestrator.providers.openai_compat import OpenAICompatProvider
from orchestrator.providers.retry import BackoffWait
from orchestrator.run_services import RunServices
from orchestrator.runs.budget import RunBudget
from orchestrator.runs.cancellation import RunHub
from orchestrator.runs.flusher import Flusher
from orchestrator.settings import Settings
from orchestrator.streams.events import EventLog
from orchestrator.streams.publisher import Publisher
from orchestrator.wiring.clients import redis_client
from orchestrator.wiring.sandboxes import build_sandboxes

log = logging.getLogger(__name__)


# Bounds per worker process (README "Capacity"): what the runs of one process share.
WORKER_REDIS_CONNECTIONS = 50
WORKER_DB_POOL_SIZE = 20
WORKER_DB_MAX_OVERFLOW = 10


def build_providers(settings: Settings) -> list[Provider]:
    if settings.demo_mode:
        log.warning("no LLM provider configured: using the built-in offline demo provider")
        return [DemoProvider()]
    return [
        OpenAICompatProvider(
            config,
            read_timeout=settings.llm_read_timeout,
            connect_timeout=settings.llm_connect_timeout,
            max_connections=settings.worker_concurrency,
            max_output_tokens=settings.llm_max_output_tokens,
        )
        for config in settings.providers
    ]


def build_breaker(settings: Settings) -> Breaker | None:
    if settings.demo_mode or settings.breaker_failures <= 0:
        return None
    config = BreakerConfig(
        failures=settings.breaker_failures,
        window=settings.breaker_window,
        cooldown=settings.breaker_cooldown,
        probe_ttl=max(settings.breaker_cooldown, 2 * settings.llm_read_timeout + 10),
    )
    # One breaker per worker pool: every process consuming the queue shares its keys.
    return Breaker(breaker_client(settings.redis_url), settings.queue_name, config)


def build_checker(settings: Settings) -> Checker | None:
    """The process's checks (DESIGN section 16): None when PREVIEW_CHECK=off or no Chromium."""
    if settings.preview_check == "off":
        return None
    chromium = find_chromium()
    if chromium is None:
        return None
    # E2B previews are on the internet; a local one is served to the page by the worker.
    browser = Browser(chromium, settings.check_concurrency, resolve_hosts=settings.sandbox == "e2b")
    return Checker(browser)


def describe_checks(settings: Settings) -> str:
    """What a worker says at start about its checks."""
    if settings.preview_check == "off":
        return "checks: off (PREVIEW_CHECK=off): versions are saved unchecked"
    chromium = find_chromium()
    if chromium is None:
        return (
            "checks: skipped, no Chromium found (install the Debian package chromium, or set "
            "PREVIEW_CHECK=off to say so): versions are saved unchecked"
        )
    return (
        f"checks: on, build and render in {chromium}; at most {settings.check_max_rounds} "
        f"repair rounds, {settings.check_concurrency} browser checks at once"
    )


def build_run_services(settings: Settings) -> RunServices:
    providers = build_providers(settings)
    breaker = build_breaker(settings)
    wait = BackoffWait(cap=settings.llm_backoff_cap, retry_cap=settings.llm_retry_after_cap)
    # The runs of a process share its connections: runs wait for one, never open more.
    client = redis_client(settings, max_connections=WORKER_REDIS_CONNECTIONS)
    db = make_sessionmaker(
        make_engine(
            settings.database_url,
            pool_size=WORKER_DB_POOL_SIZE,
            max_overflow=WORKER_DB_MAX_OVERFLOW,
        )
    )
    events = EventLog(client, maxlen=settings.event_stream_maxlen, ttl=settings.event_stream_ttl)
    return RunServices(
        settings=settings,
        db=db,
        redis=client,
        events=events,
        # One fork guard starts these threads (and the LLM reads' asyncio loop) once per process.
        hub=RunHub(client, db, heartbeat_interval=settings.heartbeat_interval, threads=PROCESS),
        publisher=Publisher(events, threads=PROCESS),
        flusher=Flusher(db, interval=settings.flush_interval, threads=PROCESS),
        new_chain=lambda: ProviderChain(
            providers,
            attempts_per_provider=settings.llm_attempts_per_provider,
            wait=wait,
            breaker=breaker,
            fitter=RunBudget(max_output_tokens=settings.llm_max_output_tokens),
        ),
        sandboxes=build_sandboxes(settings),
        checker=build_checker(settings),
    )
