"""Flush cost of a long run: bytes sent to the database and time, appending vs rewriting.

    .venv/bin/python -m benchmarks.flushes [--deltas 4000] [--size 8]

One claimed run on SQLite (or DATABASE_URL), flushed after every delta (the worst case), through
the run's `Recorder`; the baseline, measured in the same run, rewrites the whole content at each
flush as the recorder did before. Bytes are the statement parameters' sizes, seen by a SQLAlchemy
`before_cursor_execute` listener.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, update

from models import Message, make_engine, make_sessionmaker, transaction, utcnow
from models.migrate import upgrade
from orchestrator import accounts, projects
from orchestrator.runs import lifecycle
from orchestrator.runs.recorder import Recorder
from orchestrator.send_prompt import PromptRequest, _store_turn
from orchestrator.settings import normalize_database_url
from orchestrator.streams.events import DeltaEvent


class _NoEvents:
    """The Redis side is not what is measured here."""

    def append(self, *args: Any) -> None:
        pass


def _claimed_run(factory: Any, user_id: str) -> lifecycle.Lease:
    with transaction(factory) as session:
        accounts.ensure_user(session, user_id, 5)
        project = projects.create_project(session, user_id, "bench", None)
        accepted = _store_turn(
            session,
            PromptRequest(user_id=user_id, text="bench", project_id=project.id),
            5,
            timedelta(hours=1),
        )
    with transaction(factory) as session:
        message = session.get(Message, accepted.assistant_message_id)
        assert message is not None and message.run_id is not None
        lease = lifecycle.claim(session, message.id, message.run_id)
    assert lease is not None
    return lease


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deltas", type=int, default=4000)
    parser.add_argument("--size", type=int, default=8)
    args = parser.parse_args()
    raw = os.environ.get("DATABASE_URL")
    url = normalize_database_url(raw) if raw else f"sqlite:///{Path(tempfile.mkdtemp()) / 'b.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    sent = [0]

    def count(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        values = params.values() if isinstance(params, dict) else params
        sent[0] += sum(len(v) for v in values or () if isinstance(v, str | bytes))

    event.listen(engine, "before_cursor_execute", count)
    piece = "x" * args.size
    results = {}

    lease = _claimed_run(factory, f"bench-{time.time_ns()}")
    recorder = Recorder(factory, _NoEvents(), lease, flush_interval=0.0)  # type: ignore[arg-type]
    sent[0], started = 0, time.perf_counter()
    for _ in range(args.deltas):
        recorder.record(DeltaEvent(piece))
    results["append the new text (now)"] = (sent[0], time.perf_counter() - started)

    lease = _claimed_run(factory, f"bench-{time.time_ns()}")
    text = ""
    sent[0], started = 0, time.perf_counter()
    for _ in range(args.deltas):
        text += piece
        with transaction(factory) as session:
            session.execute(
                update(Message)
                .where(Message.id == lease.message_id, Message.lease == lease.token)
                .values(content=text, tool_calls=[], heartbeat_at=utcnow(), updated_at=utcnow())
            )
    results["rewrite the whole content (before)"] = (sent[0], time.perf_counter() - started)

    backend = url.split(":", 1)[0]
    print(f"{args.deltas} flushes of {args.size}-character deltas on {backend}:")
    for name, (size, seconds) in results.items():
        print(f"  {name:<36} {size / 1e6:9.2f} MB sent  {seconds:6.2f} s")


if __name__ == "__main__":
    main()
