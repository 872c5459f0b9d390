"""The preview's asset requests: reading one file out of the fragment against loading them all.

    .venv/bin/python -m benchmarks.preview_assets [--files 200] [--size 20000] [--requests 300]

One fragment of `--files` files of `--size` bytes; each request reads one asset in a fresh
session, as /preview/<fragment>/<path> does. The baseline loads the whole fragment row (what the
preview did before); the measured path asks the database for that one file. Uses DATABASE_URL
when set, else a SQLite file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from models import (
    Conversation,
    Fragment,
    Message,
    Project,
    make_engine,
    make_sessionmaker,
    transaction,
)
from models.migrate import upgrade
from orchestrator import accounts, messages
from orchestrator.settings import normalize_database_url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    url = normalize_database_url(os.environ.get("DATABASE_URL", ""))
    if not url:
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    upgrade(url)
    factory = make_sessionmaker(make_engine(url))
    fragment_id = seed(factory, args.files, args.size)
    paths = [f"assets/{n}.js" for n in range(args.files)]

    def whole(path: str) -> str:
        with transaction(factory) as session:
            return messages.public_fragment(session, fragment_id).files[path]

    def one(path: str) -> str:
        with transaction(factory) as session:
            found = messages.public_fragment_file(session, fragment_id, [path])
            assert found is not None
            return found[1]

    print(f"{args.files} files of {args.size} bytes, {args.requests} asset requests, {url[:30]}…")
    for name, read in (("whole fragment (before)", whole), ("one file (now)", one)):
        p50, p99 = measure(read, paths, args.requests)
        print(f"  {name:<24} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")


def measure(read: Callable[[str], str], paths: list[str], requests: int) -> tuple[float, float]:
    read(paths[0])  # warm the connection
    times = []
    for n in range(requests):
        start = time.perf_counter()
        read(paths[n % len(paths)])
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def seed(factory: object, count: int, size: int) -> str:
    from sqlalchemy.orm import sessionmaker

    assert isinstance(factory, sessionmaker)
    user = f"bench-{uuid.uuid4().hex[:8]}"
    with transaction(factory) as session:
        accounts.ensure_user(session, user, 0)
        project = Project(id=str(uuid.uuid4()), user_id=user, name="bench")
        conversation = Conversation(
            id=str(uuid.uuid4()), project_id=project.id, user_id=user, title="bench"
        )
        message = Message(
            id=str(uuid.uuid4()),
            conversation_id=conversation.id,
            project_id=project.id,
            user_id=user,
            role="ASSISTANT",
            status="COMPLETE",
        )
        fragment = Fragment(
            id=str(uuid.uuid4()),
            message_id=message.id,
            title="bench",
            files={f"assets/{n}.js": "x" * size for n in range(count)},
        )
        session.add(project)
        session.flush()
        session.add(conversation)
        session.flush()
        session.add(message)
        session.flush()
        session.add(fragment)
        return fragment.id


if __name__ == "__main__":
    main()
