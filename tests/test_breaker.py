"""The circuit breaker shared by every worker, in Redis (orchestrator/providers/breaker.py)."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from orchestrator.providers.breaker import Breaker, BreakerConfig, Gate, breaker_client
from tests.conftest import Api, closed_port, wait_for
from tests.fakes.llm_server import Hang, Reply


def test_once_the_breaker_is_open_a_run_goes_to_the_fallback_at_once(
    api: Api, llm: Any, fallback_llm: Any
) -> None:
    # Read time-out 1 s, 3 attempts: each run waits out 3 hangs, so two runs make 6 failures
    # (the breaker opens at 5).
    llm.default = Hang(30)
    fallback_llm.default = Reply("From the fallback.")
    project = api.project()["id"]
    for i in range(2):
        final = api.wait_terminal(api.send(project, f"prompt {i}").json()["messageId"], timeout=30)
        assert final["metadata"]["provider"] == "fallback", final
        assert "Timeout" in final["metadata"]["fallbackReason"], final["metadata"]
    seen = len(llm.requests)
    assert seen == 6

    final = api.wait_terminal(api.send(project, "prompt 3").json()["messageId"], timeout=30)
    assert final["status"] == "COMPLETE" and final["content"] == "From the fallback.", final
    assert final["metadata"]["fallbackReason"] == "circuit open", final["metadata"]
    assert final["metadata"]["attempts"] == 1  # the fallback's only: no request to the primary
    assert len(llm.requests) == seen


def test_half_open_one_probe_decides(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    breaker = Breaker(
        client, f"t-{uuid.uuid4().hex[:8]}", BreakerConfig(failures=2, window=10, cooldown=0.3)
    )
    assert breaker.allow("p") is Gate.CLOSED
    assert breaker.failure("p") is False
    breaker.success("p")  # a success clears the count
    assert breaker.failure("p") is False
    assert breaker.failure("p") is True
    assert breaker.allow("p") is Gate.OPEN and breaker.is_open("p")

    # After the cool-down one caller gets the probe; the others keep skipping.
    wait_for(lambda: breaker.allow("p") is Gate.PROBE, 5, "the half-open probe slot")
    assert breaker.allow("p") is Gate.OPEN
    assert breaker.failure("p") is True  # the probe failed: open for another cool-down
    assert breaker.allow("p") is Gate.OPEN
    wait_for(lambda: breaker.allow("p") is Gate.PROBE, 5, "the next probe slot")
    breaker.success("p")
    assert breaker.allow("p") is Gate.CLOSED and not breaker.is_open("p")
    assert breaker.failure("p") is False  # the count starts again from zero


def test_without_redis_the_breaker_lets_every_run_through() -> None:
    with closed_port() as port:
        breaker = Breaker(breaker_client(f"redis://127.0.0.1:{port}/0"), "down")
        assert breaker.allow("p") is Gate.CLOSED
        assert breaker.failure("p") is False
        breaker.success("p")
        assert breaker.allow("p") is Gate.CLOSED  # within the back-off: not even asked
