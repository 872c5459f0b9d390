"""LOG_FORMAT=json on a real worker: every line a run writes carries its message/run/user ids."""

from __future__ import annotations

import json

import pytest

from tests.fakes.llm_server import Error, Reply
from tests.faults.conftest import FaultRecord, MakeStack, Providers

pytestmark = pytest.mark.faults


def test_a_runs_log_lines_are_json_with_its_ids(
    make_stack: MakeStack, providers: Providers, fault: FaultRecord
) -> None:
    fault.name = "json-logs[worker]"
    stack = make_stack(in_process_worker=False, log_format="json")
    # The primary fails (so the run logs warnings of its own), the fallback answers.
    providers.primary.script(Error(500), Error(500), Error(500))
    providers.fallback.script(Reply("From the fallback."))
    worker = stack.worker_process()
    api = stack.api()
    sent = api.send(api.project()["id"]).json()
    final = stack.wait_terminal(sent["messageId"], 30)
    assert final.status == "COMPLETE", (final.status, final.error)
    fault.inject("LOG_FORMAT=json on a worker; a run whose primary fails 3 times")
    worker.stop()

    lines = [line for line in worker.log().splitlines() if line.strip()]
    parsed, other = [], []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            other.append(line)
    # What is not JSON is Celery's start-up banner and its shutdown notice, printed to stdout
    # rather than logged; no log record goes out as text.
    logged_as_text = [o for o in other if any(w in o for w in ("INFO", "WARNING", "orchestrator"))]
    assert not logged_as_text, "\n".join(other)
    # The worker's start-up lines (where its sandboxes are, ...) come before it is ready and
    # belong to no run; every line after that, until the run ends, is the run's.
    ready = next(i for i, p in enumerate(parsed) if p["message"].endswith(" ready."))
    started = [p for p in parsed[:ready] if p["logger"].startswith("orchestrator.")]
    assert all("message_id" not in p for p in started), started
    ours = [p for p in parsed[ready:] if p["logger"].startswith("orchestrator.")]
    assert any("gave up" in p["message"] for p in ours), ours
    for line in ours:
        assert line["message_id"] == sent["messageId"], line
        assert line["run_id"] == sent["runId"], line
        assert line["user_id"] == api.user_id, line
    fault.check(
        f"{len(parsed)} JSON log lines, none logged as text; the run's {len(ours)} "
        "orchestrator lines carry its message_id, run_id and user_id"
    )
