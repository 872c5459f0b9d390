"""Running an import in a worker: claim it, clone, read the tree back, record a new version.

Every ending goes through `_finish`, a conditional update from RUNNING: a duplicate delivery, or
an import the reaper already failed, changes nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import (
    Import,
    ImportStatus,
    Message,
    MessageType,
    Project,
    Role,
    Status,
    transaction,
    utcnow,
)
from orchestrator import projects
from orchestrator.errors import InvalidRequest
from orchestrator.git import clone, remotes
from orchestrator.git.commands import GitError
from orchestrator.imports import handoff
from orchestrator.runs import lifecycle
from orchestrator.sandboxes.snapshot import read_tree
from orchestrator.settings import Settings
from orchestrator.versions.record import LATEST

log = logging.getLogger(__name__)

STOPPED = "The worker cloning this repository stopped before it finished; please import it again."
NOT_STARTED = "No worker was free to clone this repository in time; please import it again."


@dataclass(frozen=True)
class ImportServices:
    settings: Settings
    db: sessionmaker[Session]
    redis: redis.Redis


def execute(services: ImportServices, import_id: str) -> str | None:
    """Clone import `import_id` into its project's next version; its final status, or None
    when another delivery has it."""
    settings, db = services.settings, services.db
    token = handoff.take(services.redis, import_id)
    with transaction(db) as session:
        claimed = session.execute(
            update(Import)
            .where(Import.id == import_id, Import.status == ImportStatus.PENDING)
            .values(status=ImportStatus.RUNNING, heartbeat_at=utcnow(), updated_at=utcnow())
        )
        row = session.get(Import, import_id)
        if not claimed.rowcount or row is None:  # type: ignore[attr-defined]
            return None
        url, ref, project_id = row.url, row.ref, row.project_id
    beat = _Heartbeat(db, import_id, settings.heartbeat_interval)
    try:
        remote = remotes.check(url, settings.import_allowed_hosts)
        with clone.scratch() as folder:
            cloned = clone.clone(
                remote,
                ref,
                folder,
                token=token,
                timeout=settings.import_timeout,
                max_bytes=settings.import_max_mb * 1024 * 1024,
                alive=beat,
            )
            snapshot = read_tree(cloned.tree)
    except InvalidRequest as exc:
        return _finish(db, import_id, error=exc.message)
    except GitError as exc:
        return _finish(db, import_id, error=_sentence(exc, settings))
    except Exception:
        log.exception("import %s failed", import_id)
        return _finish(db, import_id, error="The repository could not be imported.")
    if not snapshot.files:
        return _finish(db, import_id, error="The repository has no text files a version can hold.")
    imported = {"url": url, "ref": ref, "commit": cloned.commit}
    with transaction(db) as session:
        if not _still_running(session, import_id):
            return None
        project = session.get(Project, project_id)
        if project is None:  # deleted meanwhile
            return _finish(db, import_id, error="The project was deleted.")
        fragment_id = _record(
            session, project, imported, snapshot.files, snapshot.skipped, settings
        )
        return _finish(db, import_id, fragment_id=fragment_id, session=session)


def waiting_run(db: sessionmaker[Session], import_id: str) -> tuple[str, str] | None:
    """The run a prompt left waiting for this import (message id, run id), once it has ended."""
    with db() as session:
        found = session.execute(
            select(Message.id, Message.run_id)
            .join(Import, Import.message_id == Message.id)
            .where(
                Import.id == import_id,
                Import.status.in_((ImportStatus.COMPLETE, ImportStatus.FAILED)),
                Message.status == Status.PENDING,
            )
        ).first()
    if found is None or found.run_id is None:
        return None
    return found.id, found.run_id


def _record(
    session: Session,
    project: Project,
    imported: dict[str, Any],
    files: dict[str, str],
    skipped: list[dict[str, str]],
    settings: Settings,
) -> str:
    """The tree as the project's next version, on an assistant message of its conversation."""
    conversation = projects.default_conversation(session, project)
    now = utcnow()
    name = imported["url"].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "repository"
    message = Message(
        conversation_id=conversation.id,
        project_id=project.id,
        user_id=project.user_id,
        role=Role.ASSISTANT,
        seq=1,
        content=f"Imported {imported['url']} at {imported['commit'][:12]}.",
        type=MessageType.RESULT,
        status=Status.COMPLETE,
        tool_calls=[],
        run_metadata={"importedFrom": imported},
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    session.flush()
    fragment = lifecycle.upsert_fragment(
        session,
        message.id,
        lifecycle.FragmentValues(
            title=name[:200],
            files=files,
            framework=project.framework,
            sandbox_id=None,
            sandbox_url=f"{settings.public_url}/preview/{{fragment_id}}/",
            metadata={"importedFrom": imported, "skipped": skipped},
            parent_id=LATEST,
        ),
    )
    return fragment.id


def _still_running(session: Session, import_id: str) -> bool:
    status = session.scalar(select(Import.status).where(Import.id == import_id).with_for_update())
    return status == ImportStatus.RUNNING


def _finish(
    db: sessionmaker[Session],
    import_id: str,
    *,
    error: str | None = None,
    fragment_id: str | None = None,
    session: Session | None = None,
) -> str | None:
    status = ImportStatus.FAILED if error else ImportStatus.COMPLETE
    statement = (
        update(Import)
        .where(Import.id == import_id, Import.status == ImportStatus.RUNNING)
        .values(status=status, error=error, fragment_id=fragment_id, updated_at=utcnow())
    )
    if session is not None:
        done = session.execute(statement).rowcount  # type: ignore[attr-defined]
    else:
        with transaction(db) as own:
            done = own.execute(statement).rowcount  # type: ignore[attr-defined]
    return str(status) if done else None


def _sentence(exc: GitError, settings: Settings) -> str:
    """What went wrong, in words a person understands (git's reason holds no token)."""
    if exc.timed_out:
        return f"The clone took longer than {settings.import_timeout:g} seconds and was stopped."
    if exc.too_large:
        return f"The repository is larger than the {settings.import_max_mb} MB an import may hold."
    reason = exc.reason
    if any(
        sign in reason
        for sign in ("could not read Username", "Authentication failed", "terminal prompts")
    ):
        return (
            "The repository could not be read: it is private or does not exist. "
            "For a private repository, send a token that can read it."
        )
    if "not found" in reason.lower() or "couldn't find remote ref" in reason:
        return f"The repository or its ref was not found: {reason}"
    return f"The repository could not be cloned: {reason}"


class _Heartbeat:
    """Called while git runs: tells the reaper, now and then, that this worker is alive."""

    def __init__(self, db: sessionmaker[Session], import_id: str, every: float) -> None:
        self.db, self.import_id, self.every = db, import_id, every
        self.last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        with transaction(self.db) as session:
            session.execute(
                update(Import)
                .where(Import.id == self.import_id, Import.status == ImportStatus.RUNNING)
                .values(heartbeat_at=utcnow())
            )


def reap(db: sessionmaker[Session], settings: Settings) -> int:
    """Imports no worker is working on end FAILED: RUNNING without a heartbeat for
    `stale_after`, or PENDING past every re-send a run would get. How many ended."""
    now = utcnow()
    stale = now - timedelta(seconds=settings.stale_after)
    forgotten = now - timedelta(seconds=(settings.max_resends + 1) * settings.pending_grace)
    with transaction(db) as session:
        running = session.execute(
            update(Import)
            .where(
                Import.status == ImportStatus.RUNNING,
                or_(Import.heartbeat_at.is_(None), Import.heartbeat_at < stale),
            )
            .values(status=ImportStatus.FAILED, error=STOPPED, updated_at=now)
        ).rowcount  # type: ignore[attr-defined]
        pending = session.execute(
            update(Import)
            .where(Import.status == ImportStatus.PENDING, Import.created_at < forgotten)
            .values(status=ImportStatus.FAILED, error=NOT_STARTED, updated_at=now)
        ).rowcount  # type: ignore[attr-defined]
    return int(running) + int(pending)
