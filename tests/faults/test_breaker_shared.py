"""The circuit breaker is shared by every worker process, through Redis (DESIGN §11, issue 12).

One real worker process meets a hanging primary until the breaker opens; it stops, and a fresh
worker process (nothing in its memory) sends its next run straight to the fallback: the primary
sees no request.
"""

from __future__ import annotations

import pytest

from tests.fakes.llm_server import Hang, Reply
from tests.faults.conftest import FaultRecord, MakeStack, Providers

pytestmark = pytest.mark.faults


def test_a_breaker_opened_in_one_worker_process_holds_in_another(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "breaker-shared[opened by w1, obeyed by w2]"
    stack = make_stack(in_process_worker=False)
    providers.primary.default = Hang(30)  # read time-out 1 s, 3 attempts a run
    providers.fallback.default = Reply("From the fallback.")
    api = stack.api()
    project = api.project()["id"]

    first = stack.worker_process()
    for i in range(2):  # 6 failed attempts: the breaker opens at the 5th
        sent = api.send(project, f"prompt {i}").json()
        final = api.wait_terminal(sent["messageId"], timeout=40)
        assert final["metadata"]["provider"] == "fallback", final
    first.stop()
    seen = len(providers.primary.requests)
    assert seen == 6
    fault.inject("primary hangs; worker 1 makes 6 failed attempts in 2 runs, then stops")

    second = stack.worker_process()
    sent = api.send(project, "prompt 3").json()
    final = api.wait_terminal(sent["messageId"], timeout=40)
    second.wait_ready()
    assert final["status"] == "COMPLETE" and final["content"] == "From the fallback.", final
    assert final["metadata"]["fallbackReason"] == "circuit open", final["metadata"]
    assert len(providers.primary.requests) == seen  # not one request to the primary
    fault.check(
        "a fresh worker process skipped the primary (fallbackReason 'circuit open', 0 requests "
        "to it) and the fallback answered"
    )
