"""CELERY_TASK_EVENTS: a real worker sends the task events Flower shows (off by default)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.faults.conftest import FaultRecord, MakeStack

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("enabled", [True, False])
def test_task_events_reach_an_event_receiver_only_when_switched_on(
    enabled: bool, make_stack: MakeStack, fault: FaultRecord
) -> None:
    fault.name = f"task-events[{'on' if enabled else 'off'}]"
    stack = make_stack(in_process_worker=False, task_events=enabled)
    fault.inject(f"a real worker with CELERY_TASK_EVENTS={'on' if enabled else 'unset'}, one run")
    seen: list[dict[str, Any]] = []

    receivers: list[Any] = []

    def receive() -> None:  # what Flower does: a Receiver on the broker's event exchange
        with stack.celery.connection_for_read() as conn:
            receiver = stack.celery.events.Receiver(
                conn, handlers={"*": seen.append}, queue_prefix="test-events"
            )
            receivers.append(receiver)
            receiver.capture(limit=None, timeout=None, wakeup=False)  # until should_stop

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        wait_for(lambda: receivers, 10, "the event receiver")
        worker = stack.worker_process(heartbeat_events=True)
        worker.wait_ready()
        api = stack.api()
        sent = api.send(api.project()["id"])
        assert stack.wait_terminal(sent.json()["messageId"], 30).status == "COMPLETE"
        if enabled:
            wait_for(lambda: any(e["type"] == "task-succeeded" for e in seen), 10, "task-succeeded")
            started = [e for e in seen if e["type"] == "task-received"]
            assert started and started[0]["name"] == "workers.run_message"
        else:
            # "None" must mean none arrived by the time one would have: the worker's heartbeat
            # events go out on the connection its task events would take, after them, so one
            # sent a second after the run ended follows any task event the run caused.
            ended = time.time()
            wait_for(
                lambda: any(
                    e["type"] == "worker-heartbeat" and e["timestamp"] > ended + 1 for e in seen
                ),
                15,
                "a worker heartbeat sent after the run ended",
            )
            assert not [e for e in seen if e["type"].startswith("task-")], seen
    finally:
        for receiver in receivers:
            receiver.should_stop = True
        thread.join(timeout=10)
    fault.check(f"task events {'seen' if enabled else 'none'}: {sorted({e['type'] for e in seen})}")
