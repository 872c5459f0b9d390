"""Executing runs: streaming into the row, duplicate deliveries, fenced writes."""

from __future__ import annotations

import time
from typing import Any

from models import Message, Status, transaction
from orchestrator import lifecycle
from orchestrator.runner import execute_run
from tests.conftest import Api
from tests.fakes.llm_server import Reply
from workers.dispatch import enqueue_run


def test_content_grows_in_the_database_while_tokens_arrive(api: Api, llm: Any) -> None:
    text = "abcdefghij" * 6
    llm.script(Reply(text, chunk_size=2, delay=0.05))
    body = api.send(api.project()["id"]).json()
    samples = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        message = api.message(body["messageId"])
        samples.append((message["status"], message["content"]))
        if message["status"] == "COMPLETE":
            break
        time.sleep(0.05)
    partial = [c for s, c in samples if s == "STREAMING" and 0 < len(c) < len(text)]
    assert len(set(partial)) >= 2, samples
    assert samples[-1] == ("COMPLETE", text)
    statuses = [s for s, _ in samples]
    assert statuses.index("STREAMING") < statuses.index("COMPLETE")


def test_a_duplicate_delivery_does_not_run_the_model_twice(
    api: Api, llm: Any, celery_app: Any
) -> None:
    llm.script(Reply("only once", delay=0.05))
    body = api.send(api.project()["id"]).json()
    enqueue_run(celery_app, body["messageId"], body["runId"])  # races the first delivery
    final = api.wait_terminal(body["messageId"])
    assert final["content"] == "only once"
    # A late redelivery after the end finds nothing to do.
    assert execute_run(celery_app.run_services(), body["messageId"], body["runId"]) is None
    time.sleep(0.5)
    assert len(llm.requests) == 1
    assert api.message(body["messageId"]) == final


def test_a_stale_worker_can_not_write_after_the_run_was_cancelled(api: Api, db: Any) -> None:
    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        lifecycle_message = _pending_message(session, api, project["id"])
    with transaction(db) as session:
        lease = lifecycle.claim(session, lifecycle_message.id, lifecycle_message.run_id)
        assert lease is not None
        assert lifecycle.claim(session, lifecycle_message.id, lifecycle_message.run_id) is None
    with transaction(db) as session:
        lifecycle.cancel(session, api.user_id, lifecycle_message.id)
    with transaction(db) as session:
        assert not lifecycle.flush(session, lease, "late text", [])
        assert not lifecycle.heartbeat(session, lease)
        assert (
            lifecycle.complete(
                session, lease, content="late", tool_calls=[], metadata={}, fragment=None
            )
            is False
        )
        assert not lifecycle.fail(
            session, lease, content="x", error="x", tool_calls=[], metadata={}
        )
    with transaction(db) as session:
        row = session.get(Message, lifecycle_message.id)
        assert row is not None
        assert (row.status, row.content) == (Status.CANCELLED, "")


def _pending_message(session: Any, api: Api, project_id: str) -> Message:
    """A PENDING assistant message that no worker will see (stored without enqueueing)."""
    from datetime import timedelta

    from orchestrator.prompts import PromptRequest, _store_turn

    accepted = _store_turn(
        session,
        PromptRequest(user_id=api.user_id, text="hello there", project_id=project_id),
        5,
        timedelta(hours=24),
    )
    message = session.get(Message, accepted.assistant_message_id)
    assert message is not None
    return message


def test_a_rerun_keeps_what_clients_saw_so_deltas_still_add_up(
    api: Api, db: Any, llm: Any, celery_app: Any, redis_client: Any
) -> None:
    from datetime import timedelta

    from models import utcnow
    from orchestrator.events import DeltaEvent, EventLog

    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        message = _pending_message(session, api, project["id"])
    with transaction(db) as session:
        dead = lifecycle.claim(session, message.id, message.run_id)
        assert dead is not None
        lifecycle.flush(session, dead, "Half a ", [])
    # The first worker streamed one piece more than it flushed, then died.
    EventLog(redis_client).append(message.id, DeltaEvent("Half a "), DeltaEvent("thought"))
    with transaction(db) as session:
        assert lifecycle.requeue(session, message.id, utcnow() + timedelta(seconds=1))
    llm.script(Reply("A whole answer."))
    assert execute_run(celery_app.run_services(), message.id, message.run_id) == "COMPLETE"
    final = api.message(message.id)
    assert final["content"] == "Half a thought\n\nA whole answer."
    deltas = [
        data["text"]
        for _id, kind, data in EventLog(redis_client).read(message.id)
        if kind == "delta"
    ]
    assert "".join(deltas) == final["content"]
