"""Executing runs: streaming into the row, duplicate deliveries, fenced writes."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from models import Message, Status, transaction
from orchestrator.errors import SandboxError
from orchestrator.runs import lifecycle, progress
from orchestrator.runs.runner import execute_run
from orchestrator.settings import Settings
from tests.conftest import Api
from tests.fakes.llm_server import Reply, ToolCall
from workers.dispatch import enqueue_run


def test_content_grows_in_the_database_while_tokens_arrive(api: Api, llm: Any) -> None:
    text = "abcdefghij" * 6
    llm.script(Reply(text, chunk_size=2, delay=0.05))
    body = api.send(api.project()["id"]).json()
    samples = []
    deadline = time.monotonic() + 20
    while True:
        message = api.message(body["messageId"])
        samples.append((message["status"], message["content"]))
        if message["status"] == "COMPLETE":
            break
        assert time.monotonic() < deadline, f"not COMPLETE after 20 s: {samples[-3:]}"
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
        assert not progress.flush(session, lease, tail="late text", after=0, tool_calls=[])
        assert not progress.heartbeat(session, lease)
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

    from orchestrator.send_prompt import PromptRequest, _store_turn

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
    from orchestrator.streams.events import DeltaEvent, EventLog

    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        message = _pending_message(session, api, project["id"])
    with transaction(db) as session:
        dead = lifecycle.claim(session, message.id, message.run_id)
        assert dead is not None
        progress.flush(session, dead, tail="Half a ", after=0, tool_calls=[])
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


class _BreaksWhileCompleting:
    """A real sandbox (the local one) whose preview or close raises: a run's last steps failing.

    It passes every call on to the local sandbox it wraps, so files and commands are real.
    """

    def __init__(self, inner: Any, breaks: str) -> None:
        self.inner = inner
        self.breaks = breaks
        self.killed = False
        self.kind = inner.kind

    @property
    def id(self) -> str:
        return str(self.inner.id)

    @property
    def metadata(self) -> dict[str, object]:
        return dict(self.inner.metadata)

    def write(self, path: str, content: str) -> None:
        self.inner.write(path, content)

    def read(self, path: str) -> str:
        return str(self.inner.read(path))

    def list(self, path: str = ".") -> list[str]:
        return list(self.inner.list(path))

    def run(self, command: str, timeout: float = 60.0) -> Any:
        return self.inner.run(command, timeout)

    def preview(self) -> str | None:
        if self.breaks == "preview":
            raise SandboxError("the preview would not start")
        return self.inner.preview()  # type: ignore[no-any-return]

    def close(self, keep_alive: bool = False) -> None:
        if self.breaks == "close":
            raise OSError("the workspace could not be cleaned up")
        self.inner.close(keep_alive)

    def kill(self) -> None:
        self.killed = True
        self.inner.kill()


class _Factory:
    serves = "static"

    def __init__(self, inner: Any, breaks: str) -> None:
        self.inner = inner
        self.breaks = breaks
        self.made: list[_BreaksWhileCompleting] = []

    def create(self, run_id: str, framework: str) -> _BreaksWhileCompleting:
        sandbox = _BreaksWhileCompleting(self.inner.create(run_id, framework), self.breaks)
        self.made.append(sandbox)
        return sandbox


@pytest.mark.parametrize("breaks", ["preview", "close"])
def test_a_failure_while_completing_fails_the_run_refunds_and_releases_the_sandbox(
    api: Api, db: Any, llm: Any, settings: Settings, redis_client: Any, breaks: str
) -> None:
    from orchestrator.runs import reaper
    from orchestrator.streams.events import EventLog
    from orchestrator.wiring.services import build_run_services

    llm.script(
        Reply("Writing.", tool_calls=[ToolCall("write_file", {"path": "a.html", "content": "x"})]),
        Reply("Done.", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})]),
    )
    # The reaper of this test sees every run at once: stale and pending as soon as it looks.
    quick = settings.model_copy(update=dict(stale_after=0.0, pending_grace=0.0))
    built = build_run_services(quick)
    factory = _Factory(built.sandboxes, breaks)
    services = replace(built, sandboxes=factory)
    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        message = _pending_message(session, api, project["id"])
    assert execute_run(services, message.id, message.run_id) == "FAILED"

    final = api.message(message.id)
    assert (final["status"], final["type"]) == ("FAILED", "ERROR")
    assert final["content"] == "Writing.Done."  # the text clients saw is kept
    assert breaks in final["error"] or "completing" in final["error"]
    assert api.get("/api/me").json()["credits"] == 5
    (sandbox,) = factory.made
    assert sandbox.killed
    assert not Path(sandbox.inner.workspace).exists()
    kinds = [kind for _id, kind, _data in EventLog(redis_client).read(message.id)]
    assert kinds[-1] == "done"
    # Nothing left for the reaper: the model is not paid again.
    sent: list[tuple[str, str]] = []
    reaper.reap(services, dispatch=lambda m, r: sent.append((m, r)))
    assert message.id not in [m for m, _r in sent]
    assert api.message(message.id)["status"] == "FAILED"
    assert len(llm.requests) == 2


def test_each_flush_sends_only_the_new_text_and_the_content_adds_up(
    api: Api, db: Any, llm: Any, settings: Settings, redis_client: Any
) -> None:
    import json

    from sqlalchemy import event

    from orchestrator.streams.events import EventLog
    from orchestrator.wiring.services import build_run_services

    chunk, pieces = 8, 300
    text = "".join(f"{i:07d} " for i in range(pieces))  # 300 distinct pieces of 8 characters
    page = "<!doctype html>" + "x" * 2000  # a tool call as big as a small file
    write = ToolCall("write_file", {"path": "index.html", "content": page})
    # About 1.5 s of text against a flush every 20 ms: many flushes, each a few pieces.
    llm.script(Reply("", tool_calls=[write]), Reply(text, chunk_size=chunk, delay=0.005))
    services = build_run_services(settings.model_copy(update=dict(flush_interval=0.02)))
    engine = services.db.kw["bind"]
    sent: list[tuple[int, str]] = []  # what each of the process's flushes sent for this run
    call_flushes = 0

    def observe(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        nonlocal call_flushes
        sql = " ".join(statement.split()).lower()
        if not sql.startswith("update messages"):
            return
        if "json_each" in sql or "jsonb_to_recordset" in sql:  # the flusher's statement
            values = params.values() if isinstance(params, dict) else params
            (batch,) = [v for v in values if isinstance(v, str) and v.startswith("[")]
            for row in json.loads(batch):  # its rows travel as one JSON array
                if row["id"] == message.id:
                    sent.append((row["keep"], row["tail"]))
        elif "tool_calls = " in sql.split(" where ")[0] and "status" not in sql.split(" where ")[0]:
            call_flushes += 1  # a run's own flush at a tool event (not its final write)

    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        message = _pending_message(session, api, project["id"])
    event.listen(engine, "before_cursor_execute", observe)
    try:
        assert execute_run(services, message.id, message.run_id) == "COMPLETE"
    finally:
        event.remove(engine, "before_cursor_execute", observe)

    assert len(sent) >= 10, sent  # the text went in many flushes...
    # ...each carrying only what was new, after exactly what the row held: never the text so
    # far, so a long run writes bytes in proportion to what it streamed.
    held = 0
    for keep, tail in sent:
        assert keep == held and tail, (keep, held)
        held += len(tail)
    assert "".join(tail for _keep, tail in sent) == text[:held]
    assert max(len(tail) for _keep, tail in sent) < len(text) // 4
    # The tool calls travel only when they changed: the call, then its result.
    assert call_flushes == 2
    final = api.message(message.id)
    assert final["content"] == text
    assert final["toolCalls"][0]["args"]["content"] == page
    deltas = [
        d["text"] for _id, kind, d in EventLog(redis_client).read(message.id) if kind == "delta"
    ]
    assert "".join(deltas) == text


def test_a_runs_stream_exists_before_any_of_its_text_can_reach_the_database(
    api: Api, db: Any, llm: Any, settings: Settings, redis_client: Any
) -> None:
    """A client that found the run's text in the database but no stream would take the text as a
    snapshot and then read it again from the stream (CI once saw the text twice on /events)."""
    import threading

    from orchestrator.streams.events import stream_key
    from orchestrator.streams.publisher import Publisher
    from orchestrator.wiring.services import build_run_services

    built = build_run_services(settings)
    # A publisher that would send nothing on its own for a minute: only what the run sends at
    # once is in the stream while the model answers.
    services = replace(built, publisher=Publisher(built.events, window=60.0))
    llm.script(Reply("Hello.", delay=2.0), Reply("Done."))
    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        pending = _pending_message(session, api, project["id"])
        message_id, run_id = pending.id, pending.run_id
    runner = threading.Thread(target=execute_run, args=(services, message_id, run_id))
    runner.start()
    try:
        assert llm.wait_for_requests(1, timeout=15), "the run never asked the model"
        entries = redis_client.xrange(stream_key(message_id))
        assert entries, "the run asked the model before its stream had its first entry"
        assert entries[0][1][b"type"] == b"status"
    finally:
        runner.join(timeout=30)
    assert not runner.is_alive(), "the run did not end"
