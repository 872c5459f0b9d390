"""The reaper: its own queue, sweeps that expire, and a bound on re-sending a queued run."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from models import Message, transaction
from orchestrator.runs import reaper
from orchestrator.settings import Settings
from orchestrator.streams.events import EventLog
from orchestrator.wiring.services import build_run_services
from tests.conftest import Api, wait_for
from tests.test_runs import _pending_message
from workers.app import REAP_EVERY_SECONDS, REAP_TASK, maintenance_queue
from workers.worker import create_worker_app


def _queued(redis_client: Any, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in redis_client.lrange(queue, 0, -1)]


def test_beat_sends_sweeps_to_their_own_queue_and_they_expire_before_the_next(
    settings: Settings, redis_client: Any
) -> None:
    from celery.beat import Scheduler

    # An app of its own, on queues no worker consumes, so the sweeps stay where beat put them.
    app = create_worker_app(settings.model_copy(update=dict(queue_name=f"beat-{time.time_ns()}")))
    maintenance = maintenance_queue(app.settings)
    try:
        scheduler = Scheduler(app, lazy=True)
        scheduler.setup_schedule()
        entry = scheduler.schedule["reap-stuck-runs"]
        scheduler.apply_async(entry, advance=False)
        scheduler.apply_async(entry, advance=False)
        # A run queue whose every slot is busy never holds a sweep.
        assert _queued(redis_client, app.settings.queue_name) == []
        sweeps = _queued(redis_client, maintenance)
        assert [s["headers"]["task"] for s in sweeps] == [REAP_TASK, REAP_TASK]
        for sweep in sweeps:
            assert sweep["headers"]["expires"], "a sweep that never expires piles up"
            expires = datetime.fromisoformat(sweep["headers"]["expires"])
            left = (expires - datetime.now(expires.tzinfo)).total_seconds()
            assert 0 < left < REAP_EVERY_SECONDS, expires
    finally:
        redis_client.delete(maintenance, app.settings.queue_name)


def test_a_run_no_worker_takes_is_resent_a_bounded_number_of_times_then_fails(
    api: Api, db: Any, settings: Settings, redis_client: Any
) -> None:
    grace = 0.05
    quick = settings.model_copy(update=dict(pending_grace=grace, max_resends=3))
    services = build_run_services(quick)
    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        message = _pending_message(session, api, project["id"])  # never enqueued: no worker
    sent: list[str] = []

    def sweep() -> Any:
        reaper.reap(services, dispatch=lambda m, _r: sent.append(m))
        with transaction(db) as session:
            row = session.get(Message, message.id)
            assert row is not None
            return row.status == "FAILED" and row

    # Sweeps far more often than the grace period: each may re-send at most once per grace.
    failed = wait_for(lambda: sweep() or time.sleep(0.01), 20, "the queued run to be given up")
    assert 1 <= sent.count(message.id) <= quick.max_resends
    assert failed.error == "no worker picked the run up"
    assert "no worker" in failed.content and failed.credit_refunded
    assert api.get("/api/me").json()["credits"] == 5
    kinds = [kind for _id, kind, _data in EventLog(redis_client).read(message.id)]
    assert kinds[-1] == "done"
    # Given up for good: later sweeps send nothing more.
    before = sent.count(message.id)
    time.sleep(grace * 2)
    reaper.reap(services, dispatch=lambda m, _r: sent.append(m))
    assert sent.count(message.id) == before
