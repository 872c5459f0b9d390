"""Every LLM provider down, then back (DESIGN sections 7 and 9).

Failures must be clean (FAILED, type ERROR, an error set, a sentence for the user, the credit
back) and the first prompt after the providers return must work.
"""

from __future__ import annotations

import time

import pytest

from tests.fakes.llm_server import Cut, Error
from tests.faults.conftest import FaultRecord, MakeStack, Providers

pytestmark = pytest.mark.faults

BOUND = 20.0  # 3 attempts per provider, backoff capped at 0.05 s, 1 s read timeout


@pytest.mark.parametrize("how", ["http-503", "connection-refused"])
def test_every_provider_down_fails_cleanly_then_the_next_prompt_works(
    how: str, make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = f"providers-down[{how}]"
    stack = make_stack()
    api = stack.api()
    project = api.project()["id"]
    if how == "http-503":
        providers.primary.default = providers.fallback.default = Error(503, "overloaded")
        fault.inject("primary and fallback answer every request with HTTP 503")
    else:
        providers.down()
        fault.inject("primary and fallback servers stopped (connection refused)")

    started = time.monotonic()
    failed = []
    for i in range(2):
        answer = api.send(project, f"Prompt while down {i}")
        assert answer.status_code == 201, answer.text
        failed.append(api.wait_terminal(answer.json()["messageId"], BOUND))
    took = time.monotonic() - started
    for message in failed:
        assert (message["status"], message["type"]) == ("FAILED", "ERROR"), message
        assert message["error"] and "unavailable" in message["content"], message
        assert api.get(f"/api/messages/{message['id']}/fragment").json() is None
    assert api.get("/api/me").json()["credits"] == 5
    attempts = len(providers.primary.requests) + len(providers.fallback.requests)
    if how == "http-503":
        assert len(providers.primary.requests) == len(providers.fallback.requests) == 6

    providers.up()
    providers.reset()
    after = api.send(project, "Prompt once the providers are back")
    assert after.status_code == 201, after.text
    final = api.wait_terminal(after.json()["messageId"], BOUND)
    assert final["status"] == "COMPLETE" and final["content"] == "Hello from the fake LLM."
    assert api.get("/api/me").json()["credits"] == 4
    fault.check(
        f"2 prompts FAILED/ERROR with error set and a user sentence in {took:.1f}s "
        f"(bound {2 * BOUND:.0f}s), {attempts} provider requests seen, no fragment, "
        f"both credits back (5); providers back: next prompt COMPLETE, credits 4"
    )


def test_a_provider_that_breaks_after_text_reached_clients_fails_without_fallback(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "providers-down[cut-after-text]"
    stack = make_stack()
    api = stack.api()
    providers.primary.script(Cut(after_chunks=3, text="Partial answer "))
    fault.inject("primary cuts the TCP stream after 3 chunks of text; fallback healthy")
    sent = api.send(api.project()["id"])
    assert sent.status_code == 201
    message = api.wait_terminal(sent.json()["messageId"], BOUND)
    assert message["status"] == "FAILED" and message["error"], message
    assert message["content"] == "Partial answer " * 3  # the text clients saw is kept
    assert providers.fallback.requests == []  # no switch once text reached clients
    assert api.get("/api/me").json()["credits"] == 5
    fault.check(
        "FAILED with the streamed text kept and error set, fallback never called, credit back"
    )
