"""The events endpoint (DESIGN section 6): replay, live follow, resume, expiry, trimming, tokens."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
import redis
from werkzeug.serving import make_server

from orchestrator.settings import Settings
from orchestrator.streams.events import DeltaEvent, DoneEvent, EventLog, StatusEvent, stream_key
from orchestrator.streams.replay import Replay
from tests.conftest import SECRET, Api, wait_for
from tests.fakes.llm_server import Hang, Reply, ToolCall
from web.sse import EventStream
from web.stream_hub import StreamHub

PING_INTERVAL = 0.2


@dataclass(frozen=True)
class Sse:
    id: str | None
    type: str
    data: Any


@dataclass
class Received:
    events: list[Sse]
    pings: int


def parse(lines: Iterator[str], stop_after: int | None = None) -> Received:
    """A small SSE parser: `field: value` lines, blank line ends an event, `:` starts a comment."""
    events: list[Sse] = []
    pings = 0
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            pings += line.strip() == ": ping"
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        elif fields:
            events.append(Sse(fields.get("id"), fields["event"], json.loads(fields["data"])))
            fields = {}
            if stop_after is not None and len(events) >= stop_after:
                break
    return Received(events, pings)


def listen(
    client: httpx.Client, message_id: str, *, stop_after: int | None = None, **request: Any
) -> Received:
    """Open the stream and read it until the server closes it (or `stop_after` events)."""
    path = f"/api/messages/{message_id}/events"
    with client.stream("GET", path, timeout=httpx.Timeout(15, read=10), **request) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse(response.iter_lines(), stop_after)


@pytest.fixture(scope="module")
def sse_server(settings: Settings, celery_app: Any, worker: Any) -> Iterator[str]:
    """The app with a short ping interval, so idle streams are observable in a test."""
    from web import create_app

    app = create_app(
        settings.model_copy(update=dict(sse_ping_interval=PING_INTERVAL)), celery=celery_app
    )
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    hub = app.extensions.get("appforge.sse_hub")
    if hub is not None:
        hub.close()


@pytest.fixture
def user(sse_server: str) -> Api:
    return Api(sse_server, f"user_{uuid.uuid4().hex[:10]}")


def start_run(user: Api) -> str:
    response = user.send(user.project()["id"])
    assert response.status_code == 201, response.text
    return str(response.json()["messageId"])


def finished_run(
    user: Api, llm: Any, text: str = "Hello from the fake LLM."
) -> tuple[str, Received]:
    llm.script(Reply(text))
    message_id = start_run(user)
    user.wait_terminal(message_id)
    return message_id, listen(user.http, message_id)


def deltas(events: list[Sse]) -> str:
    return "".join(e.data["text"] for e in events if e.type == "delta")


def test_a_run_streams_status_deltas_tool_calls_fragment_then_done(user: Api, llm: Any) -> None:
    llm.script(
        Reply(
            "Writing the page. ",
            tool_calls=[ToolCall("write_file", {"path": "index.html", "content": "<h1>hi</h1>"})],
        ),
        Reply("done", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})]),
    )
    message_id = start_run(user)
    events = listen(user.http, message_id).events
    message = user.message(message_id)

    types = [e.type for e in events]
    assert types[0] == "status" and types[-1] == "done", types
    assert events[-1].data == {"status": "COMPLETE"}
    assert types.count("done") == 1
    assert deltas(events) == message["content"] == "Writing the page. done"
    calls = [e.data for e in events if e.type == "tool_call"]
    results = [e.data for e in events if e.type == "tool_result"]
    assert [c["name"] for c in calls] == ["write_file", "finish"]
    assert calls[0]["args"] == {"path": "index.html", "content": "<h1>hi</h1>"}
    assert [r["id"] for r in results] == [c["id"] for c in calls]
    fragment = next(e.data["fragment"] for e in events if e.type == "fragment")
    assert fragment["files"] == {"index.html": "<h1>hi</h1>"} and fragment["title"] == "T"
    assert types.index("fragment") < types.index("done")
    # Every event carries its stream id, the first included, in order (DESIGN section 13).
    assert all(e.id is not None for e in events), events
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=_id_key) and len(set(ids)) == len(ids)


def test_reconnecting_with_last_event_id_gets_exactly_the_events_after_it(
    user: Api, llm: Any
) -> None:
    llm.script(Reply("one two three four five six seven", chunk_size=4, delay=0.03))
    message_id = start_run(user)
    first = listen(user.http, message_id, stop_after=4).events  # hang up mid-run
    last_id = next(e.id for e in reversed(first) if e.id is not None)
    rest = listen(user.http, message_id, headers={"Last-Event-ID": last_id}).events
    assert deltas(first + rest) == user.message(message_id)["content"]
    assert rest[-1].type == "done"

    full = listen(user.http, message_id).events
    cut = len(full) // 2
    cursor = full[cut - 1].id
    assert cursor is not None
    by_header = listen(user.http, message_id, headers={"Last-Event-ID": cursor}).events
    by_query = listen(user.http, message_id, params={"lastEventId": cursor}).events
    assert by_header == by_query == full[cut:]
    # EventSource reconnects to the same URL and sends its newest id in the header: that wins.
    both = listen(
        user.http,
        message_id,
        params={"lastEventId": full[0].id},
        headers={"Last-Event-ID": cursor},
    ).events
    assert both == full[cut:]


def test_resuming_from_the_done_event_answers_200_and_closes_at_once(user: Api, llm: Any) -> None:
    message_id, received = finished_run(user, llm)
    done = received.events[-1]
    assert done.type == "done" and done.id is not None
    again = listen(user.http, message_id, headers={"Last-Event-ID": done.id})
    assert again.events == [] and again.pings == 0


def test_a_finished_run_whose_stream_expired_yields_one_done_from_the_database(
    user: Api, llm: Any, redis_client: Any
) -> None:
    message_id, _ = finished_run(user, llm)
    redis_client.delete(stream_key(message_id))
    assert listen(user.http, message_id).events == [Sse(None, "done", {"status": "COMPLETE"})]
    resumed = listen(user.http, message_id, headers={"Last-Event-ID": "1-0"}).events
    assert resumed == [Sse(None, "done", {"status": "COMPLETE"})]


def test_a_trimmed_cursor_gets_the_full_state_never_a_gap(
    user: Api, llm: Any, redis_client: Any
) -> None:
    text = "a long answer in many small pieces"
    message_id, received = finished_run(user, llm, text)
    full = received.events
    redis_client.xtrim(stream_key(message_id), maxlen=2, approximate=False)
    requests: list[dict[str, Any]] = [{"headers": {"Last-Event-ID": full[1].id}}, {}]
    for request in requests:
        events = listen(user.http, message_id, **request).events
        assert events[0] == Sse(None, "status", {"status": "COMPLETE"})
        assert deltas(events) == text
        assert events[-1] == full[-1]  # the log's own done, with its id to resume from
        assert [e.type for e in events] == ["status", "delta", "done"]


def test_a_trimmed_cursor_mid_run_gets_the_state_so_far_then_follows(
    user: Api, llm: Any, redis_client: Any
) -> None:
    llm.script(Reply("x" * 60, chunk_size=2, delay=0.05))
    message_id = start_run(user)
    first = listen(user.http, message_id, stop_after=5).events
    wait_for(lambda: len(user.message(message_id)["content"]) >= 10, 10, "some content")
    redis_client.xtrim(stream_key(message_id), maxlen=1, approximate=False)
    cursor = next(e.id for e in reversed(first) if e.id is not None)
    events = listen(user.http, message_id, headers={"Last-Event-ID": cursor}).events
    assert events[0] == Sse(None, "status", {"status": "STREAMING"})
    assert events[1].id is None and events[1].type == "delta" and events[1].data["text"]
    assert events[-1].type == "done" and events[-1].id is not None


def test_a_finished_run_whose_done_was_lost_still_ends_with_done(
    user: Api, llm: Any, redis_client: Any
) -> None:
    message_id, received = finished_run(user, llm)
    done, before = received.events[-1], received.events[-2]
    redis_client.xdel(stream_key(message_id), done.id)
    resumed = listen(user.http, message_id, headers={"Last-Event-ID": before.id})
    assert resumed.events == [Sse(None, "done", {"status": "COMPLETE"})]
    assert resumed.pings >= 2  # only after the database said so twice while idle


def test_pings_keep_an_idle_stream_alive(user: Api, llm: Any) -> None:
    # Gaps under the test settings' 1 s read timeout (a gap past it is a retry, which would take
    # the default reply), but long enough for pings at PING_INTERVAL between the chunks.
    llm.script(Reply("slow words", chunk_size=2, delay=0.5))
    message_id = start_run(user)
    received = listen(user.http, message_id)
    assert received.pings >= 3
    assert deltas(received.events) == "slow words"
    assert received.events[-1].type == "done"


def test_fifty_concurrent_clients_of_one_run_get_identical_events(user: Api, llm: Any) -> None:
    llm.script(Reply("many listeners hear the same words " * 3, chunk_size=3, delay=0.02))
    message_id = start_run(user)
    wait_for(lambda: user.message(message_id)["status"] != "PENDING", 10, "the run to start")
    results: list[list[Sse] | BaseException] = []

    def client() -> None:
        with httpx.Client(base_url=str(user.http.base_url), headers=user.http.headers) as http:
            try:
                results.append(listen(http, message_id).events)
            except BaseException as exc:  # reported below, not lost in the thread
                results.append(exc)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 50
    assert not [r for r in results if isinstance(r, BaseException)]
    first = results[0]
    assert isinstance(first, list) and first[0].type == "status" and first[-1].type == "done"
    assert all(r == first for r in results)
    assert deltas(first) == user.message(message_id)["content"]


def test_a_cancelled_run_ends_with_done_cancelled(user: Api, llm: Any) -> None:
    llm.script(Hang(seconds=30, after_chunks=1))
    message_id = start_run(user)
    wait_for(lambda: user.message(message_id)["status"] == "STREAMING", 10, "the run to start")
    assert user.delete(f"/api/messages/{message_id}").status_code == 200
    events = listen(user.http, message_id).events
    assert events[0].type == "status"
    assert events[-1] == Sse(events[-1].id, "done", {"status": "CANCELLED"})


def test_a_stream_token_opens_that_message_alone(
    user: Api, llm: Any, make_api: Any, sse_server: str
) -> None:
    message_id, received = finished_run(user, llm)
    other_id, _ = finished_run(user, llm)
    response = user.post(f"/api/messages/{message_id}/events/token")
    assert response.status_code == 200, response.text
    body = response.json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["expiresAt"])
    expires = datetime.strptime(body["expiresAt"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 300

    with httpx.Client(base_url=sse_server) as anonymous:
        assert listen(anonymous, message_id, params={"token": body["token"]}) == received
        path = f"/api/messages/{other_id}/events"
        assert anonymous.get(path, params={"token": body["token"]}).status_code == 401
        now = int(time.time())
        claims = {"sub": user.user_id, "msg": message_id, "aud": "events"}
        expired = jwt.encode({**claims, "exp": now - 60}, SECRET, "HS256")
        forged = jwt.encode(
            {**claims, "exp": now + 60}, "another-secret-another-secret-0123", "HS256"
        )
        path = f"/api/messages/{message_id}/events"
        for token in (expired, forged, user.token):  # a user JWT is not a stream token
            response = anonymous.get(path, params={"token": token})
            assert response.status_code == 401 and "error" in response.json()


def test_another_users_message_is_not_found(user: Api, llm: Any, sse_server: str) -> None:
    message_id, _ = finished_run(user, llm)
    stranger = Api(sse_server, f"user_{uuid.uuid4().hex[:10]}")
    for response in (
        stranger.get(f"/api/messages/{message_id}/events"),
        stranger.post(f"/api/messages/{message_id}/events/token"),
        user.get(f"/api/messages/{uuid.uuid4()}/events"),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "Message not found"}
    assert httpx.get(f"{sse_server}/api/messages/{message_id}/events").status_code == 401


def test_a_malformed_last_event_id_is_refused(user: Api, llm: Any) -> None:
    message_id, _ = finished_run(user, llm)
    response = user.get(f"/api/messages/{message_id}/events", headers={"Last-Event-ID": "nope"})
    assert response.status_code == 400 and "error" in response.json()


def test_a_client_that_falls_behind_rereads_the_log_and_misses_nothing(redis_url: str) -> None:
    hub = StreamHub(redis_url, limit=3)  # a mailbox of three events: it will overflow
    log = EventLog(redis.Redis.from_url(redis_url))
    message_id = str(uuid.uuid4())
    log.append(message_id, StatusEvent("STREAMING"))
    stream = iter(EventStream(hub, hub.client, message_id, Replay([], "0-0"), ping_interval=0.1))
    try:
        assert "event: status" in next(stream)
        ids = log.append(message_id, *(DeltaEvent(f"{n} ") for n in range(40)))
        wait_for(lambda: not hub.streams, 5, "the hub to drop the slow subscription")
        ids += log.append(message_id, DoneEvent("COMPLETE"))
        received = parse(line for chunk in stream for line in chunk.split("\n")).events
        assert [e.id for e in received] == ids
        assert deltas(received) == "".join(f"{n} " for n in range(40))
    finally:
        hub.close()
        log.redis.delete(stream_key(message_id))


@pytest.fixture
def unclaimed(
    settings: Settings,
) -> Iterator[tuple[Api, Callable[[str, str], Any]]]:
    """A server whose runs no worker takes, and a function that executes one in this thread."""
    from orchestrator.runs.runner import execute_run
    from orchestrator.wiring.services import build_run_services
    from web import create_app
    from workers.worker import create_worker_app

    quiet = settings.model_copy(
        update=dict(
            queue_name=f"unconsumed-{uuid.uuid4().hex[:8]}", sse_ping_interval=PING_INTERVAL
        )
    )
    services = build_run_services(quiet)
    app = create_app(quiet, celery=create_worker_app(quiet))
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield (
            Api(f"http://127.0.0.1:{http.server_port}", f"user_{uuid.uuid4().hex[:10]}"),
            lambda message_id, run_id: execute_run(services, message_id, run_id),
        )
    finally:
        http.shutdown()
        hub = app.extensions.get("appforge.sse_hub")
        if hub is not None:
            hub.close()
        redis.Redis.from_url(quiet.redis_url).delete(quiet.queue_name)


def test_a_client_before_any_worker_gets_the_same_ids_as_every_later_client(
    unclaimed: tuple[Api, Callable[[str, str], Any]], llm: Any, worker: Any
) -> None:
    """(`worker`: so the shared fake LLM is idle before this test scripts it.)"""
    user, execute = unclaimed
    sent = user.send(user.project()["id"]).json()
    message_id, run_id = sent["messageId"], sent["runId"]
    early: list[Sse] = []
    opened = threading.Event()

    def first_client() -> None:
        path = f"/api/messages/{message_id}/events"
        with user.http.stream("GET", path, timeout=httpx.Timeout(15, read=10)) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            early.extend(parse(lines, stop_after=1).events)
            opened.set()
            early.extend(parse(lines).events)

    reader = threading.Thread(target=first_client, daemon=True)
    reader.start()
    assert opened.wait(15), "the first client got no event"
    assert user.message(message_id)["status"] == "PENDING"  # no worker has claimed it yet
    assert early[0].type == "status" and early[0].data == {"status": "PENDING"}
    assert early[0].id is not None, "the first event has no stream id"

    llm.script(Reply("Hello from the fake LLM."))
    execute(message_id, run_id)
    reader.join(20)
    assert not reader.is_alive(), "the first client's stream did not end"
    later = listen(user.http, message_id).events
    assert [(e.id, e.type, e.data) for e in later] == [(e.id, e.type, e.data) for e in early]
    assert early[-1].type == "done" and all(e.id is not None for e in early)
    # A browser resuming from the first event's id gets exactly the rest.
    rest = listen(user.http, message_id, headers={"Last-Event-ID": early[0].id}).events
    assert rest == early[1:]


def test_a_client_between_the_claim_and_the_workers_first_event_gets_an_id_too(
    unclaimed: tuple[Api, Callable[[str, str], Any]], db: Any, redis_client: redis.Redis
) -> None:
    """The claim commits STREAMING a moment before the worker appends its first event."""
    from models import transaction
    from orchestrator.runs import lifecycle

    user, _ = unclaimed
    sent = user.send(user.project()["id"]).json()
    message_id = sent["messageId"]
    with transaction(db) as session:  # what a worker's claim does, stopped before its append
        assert lifecycle.claim(session, message_id, sent["runId"]) is not None
    first = listen(user.http, message_id, stop_after=1).events
    assert first[0].type == "status" and first[0].data == {"status": "STREAMING"}
    assert first[0].id is not None
    entries = redis_client.xrange(stream_key(message_id))
    assert [e[0].decode() for e in entries] == [first[0].id]  # it is the log's first entry
    EventLog(redis_client).finish(message_id, "CANCELLED")
    with transaction(db) as session:
        lifecycle.cancel(session, user.user_id, message_id)


def _id_key(stream_id: str | None) -> tuple[int, int]:
    ms, _, seq = (stream_id or "0-0").partition("-")
    return int(ms), int(seq or 0)
