"""The web app's /metrics after a run (DESIGN section 11): the run and its requests are counted.

The session's worker runs in this process, so this one scrape shows both sides; the worker
machine's own endpoint is scraped from a real prefork worker in tests/faults/test_metrics_worker.py.
"""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_web_metrics_count_the_run_and_its_requests(api: Api, server: str) -> None:
    before = samples(httpx.get(f"{server}/metrics").text)
    final = api.wait_terminal(api.send(api.project()["id"]).json()["messageId"])
    assert final["status"] == "COMPLETE", final
    api.get(f"/api/messages/{final['id']}")
    scraped = httpx.get(f"{server}/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    after = samples(scraped.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # By URL rule, not by raw path: one series for every message id.
    assert grew("appforge_http_requests_total", route="/api/messages", status="201") == 1
    assert grew("appforge_http_requests_total", route="/api/messages/<message_id>", status="200")
    assert grew("appforge_prompts_accepted_total") == 1
    assert grew("appforge_runs_started_total") == 1
    assert grew("appforge_runs_total", status="COMPLETE") == 1
    assert grew("appforge_run_seconds_count") == 1
    assert grew("appforge_first_delta_seconds_count") == 1
    assert grew("appforge_provider_calls_total", provider="primary", outcome="ok") >= 1
    # What the provider reported for the run (the fake model counts four characters a token).
    usage = final["metadata"]["usage"]
    assert usage["completionTokens"] > 0 and usage["promptTokens"] > 0, usage
    assert grew("appforge_tokens_total", direction="out") == usage["completionTokens"]
    assert grew("appforge_tokens_total", direction="in") == usage["promptTokens"]
    # And by provider, with the part served from its prompt cache.
    tokens = "appforge_provider_tokens_total"
    assert grew(tokens, provider="primary", kind="prompt") == usage["promptTokens"]
    assert grew(tokens, provider="primary", kind="completion") == usage["completionTokens"]
    assert grew(tokens, provider="primary", kind="cached") == usage["cachedTokens"]
    assert value(after, "appforge_runs_in_progress") == 0
    assert ("appforge_sse_streams_open", ()) in after


def test_the_grafana_dashboard_reads_only_metrics_we_export() -> None:
    import json
    import re
    from pathlib import Path

    from prometheus_client.metrics import MetricWrapperBase

    from orchestrator import metrics

    exported = {"appforge_queue_length", "appforge_circuit_open"}  # collectors read at scrape
    for item in vars(metrics).values():
        if isinstance(item, MetricWrapperBase):
            exported.add(item._name)
    dashboard = json.loads((Path(__file__).parents[1] / "ops/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for expr in exprs
        for name in re.findall(r"appforge_\w+", expr)
    }
    assert used <= exported, used - exported
    pinned = {"appforge_runs", "appforge_runs_in_progress", "appforge_queue_length"}
    pinned |= {"appforge_run_seconds", "appforge_first_delta_seconds", "appforge_provider_calls"}
    pinned |= {"appforge_circuit_open", "appforge_http_requests"}
    assert pinned <= used


def test_cancel_latency_and_open_streams_are_measured(api: Api, server: str, llm: Any) -> None:
    from tests.conftest import wait_for
    from tests.fakes.llm_server import Reply

    llm.default = Reply("Working on it. " * 100, chunk_size=2, delay=0.05)
    before = samples(httpx.get(f"{server}/metrics").text)
    message_id = api.send(api.project()["id"]).json()["messageId"]
    wait_for(lambda: api.message(message_id)["status"] == "STREAMING", 10, "the run to stream")
    headers = {"Authorization": f"Bearer {api.token}"}
    with httpx.stream(
        "GET", f"{server}/api/messages/{message_id}/events", headers=headers, timeout=30
    ) as events:
        assert events.status_code == 200, events.read()
        # One iterator, kept: a dropped one closes the response, and the server sees a hang-up.
        lines = events.iter_lines()
        next(lines)  # the stream is open and has begun
        during = samples(httpx.get(f"{server}/metrics").text)
        assert value(during, "appforge_sse_streams_open") >= 1
        assert value(during, "appforge_runs_in_progress") >= 1
        assert api.delete(f"/api/messages/{message_id}").status_code == 200
        assert api.wait_terminal(message_id)["status"] == "CANCELLED"
        del lines
    after = samples(httpx.get(f"{server}/metrics").text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("appforge_runs_total", status="CANCELLED") == 1
    assert grew("appforge_cancel_seconds_count") == 1
    assert 0 < grew("appforge_cancel_seconds_sum") < 60
    wait_for(
        lambda: (
            value(samples(httpx.get(f"{server}/metrics").text), "appforge_sse_streams_open")
            == value(before, "appforge_sse_streams_open")
        ),
        10,
        "the closed stream to stop counting",
    )
