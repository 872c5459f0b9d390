"""Giving a new fragment its place among its project's versions: number, parent, changes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Fragment, Message
from orchestrator.versions import changes, numbering

# A fragment's parent when its writer does not name one: the project's newest version now.
LATEST = "latest"


def place_new(
    session: Session,
    fragment: Fragment,
    message_id: str,
    parent_id: str | None,
    known_changes: dict[str, list[str]] | None = None,
) -> None:
    """Number `fragment` (not yet flushed) as its project's next version, against its parent."""
    project_id = session.scalar(select(Message.project_id).where(Message.id == message_id))
    assert project_id is not None
    fragment.project_id = project_id
    fragment.version = numbering.next_version(session, project_id)
    if parent_id == LATEST:
        newest = numbering.latest(session, project_id)
        parent_id = newest.id if newest is not None else None
    fragment.parent_id = parent_id
    refresh_changes(session, fragment, known_changes)


def refresh_changes(
    session: Session, fragment: Fragment, known_changes: dict[str, list[str]] | None = None
) -> None:
    """Against the parent; a first version may bring its own (compared with its template)."""
    if known_changes is not None and fragment.parent_id is None:
        fragment.changes = known_changes
        return
    parent = session.get(Fragment, fragment.parent_id) if fragment.parent_id else None
    before = (parent.files or {}) if parent is not None else {}
    fragment.changes = changes.compute(before, fragment.files or {})
