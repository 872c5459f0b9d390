"""Versions in the database: the migration of an existing database, and numbering under races."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from models import (
    Conversation,
    Fragment,
    Message,
    Project,
    Role,
    User,
    make_engine,
    make_sessionmaker,
    transaction,
)
from models.migrate import upgrade
from orchestrator.runs import lifecycle
from orchestrator.runs.lifecycle import FragmentValues
from tests.conftest import postgres_schema


@pytest.fixture
def empty_database_url(tmp_path: Any) -> Iterator[str]:
    """A database of its own, with no tables yet (PostgreSQL when DATABASE_URL is set)."""
    raw = os.environ.get("DATABASE_URL")
    if not raw:
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    with postgres_schema(raw, "m") as url:
        yield url


def _insert_0001_rows(engine: Any) -> dict[str, list[str]]:
    """Rows as revision 0001 stored them: two projects, fragments out of id order."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    fragments: dict[str, list[str]] = {}
    with engine.begin() as conn:
        conn.execute(
            t["users"].insert(),
            [{"id": "u", "plan": "FREE", "credits": 1, "created_at": now, "updated_at": now}],
        )
        files = [
            {"index.html": "<h1>1</h1>"},
            {"index.html": "<h1>2</h1>", "app.js": "x"},
            {"app.js": "x", "style.css": "y"},
        ]
        for project in ("p1", "p2"):
            conn.execute(
                t["projects"].insert(),
                [
                    {
                        "id": project,
                        "user_id": "u",
                        "name": project,
                        "framework": "NEXTJS",
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
            conn.execute(
                t["conversations"].insert(),
                [
                    {
                        "id": f"c-{project}",
                        "project_id": project,
                        "user_id": "u",
                        "title": "c",
                        "is_default": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
            count = 3 if project == "p1" else 1
            for i in range(count):
                message_id = f"m-{project}-{i}"
                conn.execute(
                    t["messages"].insert(),
                    [
                        {
                            "id": message_id,
                            "conversation_id": f"c-{project}",
                            "project_id": project,
                            "user_id": "u",
                            "role": "ASSISTANT",
                            "seq": 1,
                            "content": "",
                            "type": "RESULT",
                            "status": "COMPLETE",
                            "attempts": 1,
                            "tool_calls": [],
                            "run_metadata": {},
                            "credit_refunded": False,
                            "created_at": now,
                            "updated_at": now,
                        }
                    ],
                )
                # Ids sort against creation order: the migration must order by time.
                fragment_id = f"f-{project}-{9 - i}"
                conn.execute(
                    t["fragments"].insert(),
                    [
                        {
                            "id": fragment_id,
                            "message_id": message_id,
                            "title": "t",
                            "files": files[i],
                            "metadata": {},
                            "framework": "NEXTJS",
                            "created_at": now + timedelta(minutes=i),
                            "updated_at": now,
                        }
                    ],
                )
                fragments.setdefault(project, []).append(fragment_id)
    return fragments


def test_an_existing_database_migrates_its_fragments_into_versions_in_creation_order(
    empty_database_url: str,
) -> None:
    upgrade(empty_database_url, "0001")
    engine = make_engine(empty_database_url)
    created = _insert_0001_rows(engine)
    upgrade(empty_database_url)
    with transaction(make_sessionmaker(engine)) as session:
        rows = {f.id: f for f in session.scalars(sa.select(Fragment))}
        first, second, third = (rows[i] for i in created["p1"])
        assert [first.version, second.version, third.version] == [1, 2, 3]
        assert [first.parent_id, second.parent_id, third.parent_id] == [None, first.id, second.id]
        assert first.changes == {"added": ["index.html"], "modified": [], "deleted": []}
        assert second.changes == {"added": ["app.js"], "modified": ["index.html"], "deleted": []}
        assert third.changes == {"added": ["style.css"], "modified": [], "deleted": ["index.html"]}
        other = rows[created["p2"][0]]
        assert (other.project_id, other.version, other.parent_id) == ("p2", 1, None)
    # The database itself refuses a duplicate version.
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.update(Fragment).where(Fragment.id == created["p1"][2]).values(version=1))
    engine.dispose()


def test_the_migration_goes_down_and_up_again(empty_database_url: str) -> None:
    from models.migrate import downgrade

    upgrade(empty_database_url)
    downgrade(empty_database_url, "0001")
    engine = make_engine(empty_database_url)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("fragments")}
    assert not columns & {"project_id", "version", "parent_id", "changes"}
    engine.dispose()
    upgrade(empty_database_url)


def test_runs_finishing_together_in_many_conversations_get_consecutive_versions(db: Any) -> None:
    """Real concurrency: every thread writes its fragment in its own transaction at once."""
    racers = 8
    with transaction(db) as session:
        user_id = f"u-{uuid.uuid4().hex[:8]}"
        session.add(User(id=user_id, credits=0))
        session.flush()
        project = Project(user_id=user_id, name="race")
        session.add(project)
        session.flush()
        message_ids = []
        for i in range(racers):
            conversation = Conversation(project_id=project.id, user_id=user_id, title=f"c{i}")
            session.add(conversation)
            session.flush()
            message = Message(
                conversation_id=conversation.id,
                project_id=project.id,
                user_id=user_id,
                role=Role.ASSISTANT,
            )
            session.add(message)
            session.flush()
            message_ids.append(message.id)
    barrier = threading.Barrier(racers)
    errors: list[BaseException] = []

    def finish(message_id: str, index: int) -> None:
        try:
            barrier.wait(timeout=10)
            with transaction(db) as session:
                lifecycle.upsert_fragment(
                    session,
                    message_id,
                    FragmentValues(
                        title=f"run {index}",
                        files={f"file{index}.txt": "x"},
                        framework="NEXTJS",
                        sandbox_id=None,
                        sandbox_url=None,
                        metadata={},
                    ),
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=finish, args=(m, i)) for i, m in enumerate(message_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    with transaction(db) as session:
        versions = sorted(
            session.scalars(sa.select(Fragment.version).where(Fragment.project_id == project.id))
        )
    assert versions == list(range(1, racers + 1))
