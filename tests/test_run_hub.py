"""What one worker process shares between the runs it holds (DESIGN sections 8, 9 and 14).

One cancel listener, one heartbeat statement and one event sink per process: each still acts
per run. Real Redis and a real database; the rows are made here, no worker runs.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import update

from models import Conversation, Message, Project, Status, User, new_id, transaction
from orchestrator.runs import lifecycle
from orchestrator.runs.cancellation import RunHub, RunWatch, flag_key, request_cancel
from orchestrator.runs.lifecycle import Lease
from orchestrator.streams.events import DeltaEvent, EventLog, StatusEvent, ToolCallEvent
from orchestrator.streams.publisher import Publisher
from tests.conftest import wait_for


@pytest.fixture
def streaming_runs(db: Any) -> Iterator[Callable[[int], list[Lease]]]:
    """Runs STREAMING under a lease; CANCELLED after the test, since no worker holds them."""
    made: list[Lease] = []

    def make(count: int) -> list[Lease]:
        leases = _streaming_runs(db, count)
        made.extend(leases)
        return leases

    yield make
    with transaction(db) as session:
        session.execute(
            update(Message)
            .where(Message.id.in_([lease.message_id for lease in made]))
            .values(status=Status.CANCELLED, lease=None)
        )


def _streaming_runs(db: Any, count: int) -> list[Lease]:
    """`count` assistant messages STREAMING under a lease, as claim() leaves them."""
    user = f"hub-{uuid.uuid4().hex[:8]}"
    leases = []
    with transaction(db) as session:
        session.add(User(id=user, plan="FREE", credits=0))
        session.flush()
        project = Project(user_id=user, name="hub")
        session.add(project)
        session.flush()
        for i in range(count):
            conversation = Conversation(project_id=project.id, user_id=user, title=f"c{i}")
            session.add(conversation)
            session.flush()
            message = Message(
                conversation_id=conversation.id,
                project_id=project.id,
                user_id=user,
                role="ASSISTANT",
                status=Status.PENDING,
                run_id=new_id(),
            )
            session.add(message)
            session.flush()
            leases.append((message.id, message.run_id))
    claimed = []
    for message_id, run_id in leases:
        with transaction(db) as session:
            lease = lifecycle.claim(session, message_id, run_id)
        assert lease is not None
        claimed.append(lease)
    return claimed


def _heartbeat(db: Any, message_id: str) -> Any:
    with transaction(db) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message.heartbeat_at


def test_one_heartbeat_statement_keeps_the_runs_held_and_stops_the_one_taken_away(
    db: Any, redis_client: redis.Redis, streaming_runs: Callable[[int], list[Lease]]
) -> None:
    kept, taken, other = streaming_runs(3)
    hub = RunHub(redis_client, db, heartbeat_interval=3600)  # beats only when told to here
    stopped: list[str] = []
    watches = [RunWatch(hub, lease, on_cancel=lambda m=lease.message_id: stopped.append(m))
               for lease in (kept, taken, other)]  # fmt: skip
    for watch in watches:
        watch.__enter__()
    try:
        # The reaper re-queued `taken` and another worker claimed it: a new lease, not ours.
        with transaction(db) as session:
            assert lifecycle.requeue(session, taken.message_id, lifecycle.utcnow())
            assert lifecycle.claim(session, taken.message_id, taken.run_id) is not None
        before = _heartbeat(db, kept.message_id)
        hub.heartbeat()
        assert [w.requested() for w in watches] == [False, True, False]
        assert watches[1].reason == "lost"
        assert _heartbeat(db, kept.message_id) > before
        assert _heartbeat(db, other.message_id) > before
        wait_for(lambda: stopped == [taken.message_id], 5, "the lost run's sandbox killed")
    finally:
        for watch in watches:
            watch.__exit__(None, None, None)


def test_the_cancel_listener_stops_only_the_run_cancelled_and_wakes_its_waiter(
    db: Any, redis_client: redis.Redis, streaming_runs: Callable[[int], list[Lease]]
) -> None:
    first, second = streaming_runs(2)
    hub = RunHub(redis_client, db, heartbeat_interval=3600)
    woken = threading.Event()
    with RunWatch(hub, first) as one, RunWatch(hub, second) as two:
        one.on_request(woken.set)
        wait_for(hub.listening.is_set, 10, "the listener subscribed")
        request_cancel(redis_client, first.message_id)
        assert woken.wait(5), "the waiter of the cancelled run was never woken"
        assert (one.requested(), one.reason, two.requested()) == (True, "cancelled", False)


def test_a_cancel_flagged_before_the_run_started_stops_it_when_it_joins(
    db: Any, redis_client: redis.Redis, streaming_runs: Callable[[int], list[Lease]]
) -> None:
    (lease,) = streaming_runs(1)
    redis_client.set(flag_key(lease.message_id), "1", ex=60)  # no listener was there to hear it
    hub = RunHub(redis_client, db, heartbeat_interval=3600)
    with RunWatch(hub, lease) as watch:
        assert watch.requested() and watch.reason == "cancelled"


def test_the_process_sink_keeps_each_runs_order_and_joins_its_deltas(
    redis_client: redis.Redis,
) -> None:
    events = EventLog(redis_client)
    publisher = Publisher(events, window=0.05)
    a, b = f"sink-{uuid.uuid4().hex}", f"sink-{uuid.uuid4().hex}"
    publisher.add(a, StatusEvent("STREAMING"), DeltaEvent("Hel"))
    publisher.add(b, DeltaEvent("other "))
    publisher.add(a, DeltaEvent("lo"))
    publisher.add(a, ToolCallEvent("c1", "write_file", {"path": "x"}))
    publisher.add(a, DeltaEvent(" again"))
    publisher.add(b, DeltaEvent("run"))
    publisher.close(a)
    assert [(kind, data) for _id, kind, data in events.read(a)] == [
        ("status", {"status": "STREAMING"}),
        ("delta", {"text": "Hello"}),
        ("tool_call", {"id": "c1", "name": "write_file", "args": {"path": "x"}}),
        ("delta", {"text": " again"}),
    ]
    wait_for(lambda: events.read(b), 5, "the other run's events sent by the process's thread")
    assert [(kind, data) for _id, kind, data in events.read(b)] == [
        ("delta", {"text": "other run"})
    ]


def test_the_process_sink_sends_nothing_after_a_runs_done(redis_client: redis.Redis) -> None:
    events = EventLog(redis_client)
    publisher = Publisher(events, window=0.01)
    message_id = f"sink-{uuid.uuid4().hex}"
    publisher.add(message_id, DeltaEvent("before"))
    publisher.close(message_id)
    events.finish(message_id, "CANCELLED")
    publisher.add(message_id, DeltaEvent("late"))  # a worker that has yet to notice the cancel
    publisher.close(message_id)
    kinds = [(kind, data) for _id, kind, data in events.read(message_id)]
    assert kinds == [("delta", {"text": "before"}), ("done", {"status": "CANCELLED"})]


def test_the_process_sink_survives_redis_forgetting_its_scripts(
    redis_client: redis.Redis,
) -> None:
    events = EventLog(redis_client)
    message_id = f"sink-{uuid.uuid4().hex}"
    redis_client.script_flush()  # as a Redis restart does
    events.append_many({message_id: [DeltaEvent("still here")]})
    assert [data for _id, _kind, data in events.read(message_id)] == [{"text": "still here"}]
