"""The worker machine's metrics endpoint (DESIGN section 11), scraped from a real worker.

With the Procfile's pool the run executes in the worker's process; with prefork (which operators
may still choose) it runs in a child, and the endpoint is served by the main process, which never
runs it: the run is counted only if the child's values reach the scrape (multiprocess mode).
"""

from __future__ import annotations

import httpx
import pytest
import redis

from orchestrator.providers.breaker import Breaker, BreakerConfig
from orchestrator.wiring.bundled_redis import free_port
from tests.conftest import wait_for
from tests.faults.conftest import FaultRecord, MakeStack, Providers
from tests.test_metrics import samples, value

pytestmark = pytest.mark.faults


def test_the_worker_machine_serves_the_metrics_of_its_children(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "worker-metrics[a run through the Procfile's pool counted]"
    # The worker takes a port number (0 turns its endpoint off): one outside the ephemeral range.
    port = free_port()
    stack = make_stack(in_process_worker=False, worker_metrics_port=port)
    worker = stack.worker_process()
    worker.wait_ready()
    url = f"http://127.0.0.1:{port}/metrics"
    before = samples(wait_for(lambda: _scrape(url), 10, "the worker's metrics endpoint"))
    assert value(before, "appforge_runs_total", status="COMPLETE") == 0
    fault.inject(f"one run through a worker serving /metrics on port {port}")

    api = stack.api()
    sent = api.send(api.project()["id"])
    assert sent.status_code == 201, sent.text
    final = stack.wait_terminal(sent.json()["messageId"], 30)
    assert final.status == "COMPLETE", (final.status, final.error, worker.log()[-2000:])

    after = samples(_scrape(url) or "")
    assert value(after, "appforge_runs_started_total") == 1
    assert value(after, "appforge_runs_total", status="COMPLETE") == 1
    assert value(after, "appforge_run_seconds_count") == 1
    assert value(after, "appforge_first_delta_seconds_count") == 1
    assert value(after, "appforge_provider_calls_total", provider="primary", outcome="ok") >= 1
    assert value(after, "appforge_runs_in_progress") == 0
    queue = stack.settings.queue_name
    assert ("appforge_queue_length", (("queue", queue),)) in after
    assert value(after, "appforge_circuit_open", provider="primary") == 0

    # The breaker is shared through Redis: opened by anyone, the worker's scrape shows it.
    breaker = Breaker(redis.Redis.from_url(stack.settings.redis_url), queue, BreakerConfig())
    for _ in range(BreakerConfig().failures):
        breaker.failure("primary")
    opened = samples(_scrape(url) or "")
    assert value(opened, "appforge_circuit_open", provider="primary") == 1
    assert value(opened, "appforge_circuit_open", provider="fallback") == 0
    breaker.success("primary")
    fault.check(
        "scrape after the run: runs_total{COMPLETE}=1, runs_started=1, run_seconds and "
        "first_delta counted once, runs_in_progress 0, queue_length present; "
        "circuit_open{primary} 0, then 1 once the shared breaker opened"
    )


def _scrape(url: str) -> str | None:
    try:
        answer = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return answer.text if answer.status_code == 200 else None


def test_a_killed_child_stops_counting_as_a_run_in_progress(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    import os
    import signal

    from tests.fakes.llm_server import Reply

    fault.name = "worker-metrics[prefork child SIGKILLed mid-run]"
    port = free_port()
    stack = make_stack(in_process_worker=False, worker_metrics_port=port)
    providers.primary.script(Reply("Slowly. " * 100, chunk_size=4, delay=0.1))  # then the default
    worker = stack.worker_process(pool="prefork")
    worker.wait_ready()
    url = f"http://127.0.0.1:{port}/metrics"
    api = stack.api()
    sent = api.send(api.project()["id"]).json()
    stack.wait_row(sent["messageId"], lambda m: len(m.content) > 20, 30, "text streaming")
    during = samples(_scrape(url) or "")
    assert value(during, "appforge_runs_in_progress") == 1
    assert worker.process is not None
    children = [pid for pid in worker.group() if pid != worker.process.pid]
    assert children, "no prefork child"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    fault.inject(f"SIGKILL to the prefork child {children} (not the worker) while STREAMING")
    with stack.reaper():
        final = stack.wait_terminal(sent["messageId"], 60)
    assert final.status == "COMPLETE" and final.attempts == 2, (final.status, final.attempts)
    after = samples(_scrape(url) or "")
    assert value(after, "appforge_runs_in_progress") == 0
    assert value(after, "appforge_runs_total", status="COMPLETE") == 1
    fault.check(
        "re-run to COMPLETE by the respawned child; the scrape after: runs_in_progress 0 (the dead "
        "child's live gauge dropped), runs_total{COMPLETE} 1"
    )
