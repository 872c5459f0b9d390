"""Giving a new fragment its place among its project's versions: number, parent, changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Fragment, Message, new_id
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


@dataclass(frozen=True)
class FragmentValues:
    title: str
    files: dict[str, str]
    framework: str
    sandbox_id: str | None
    sandbox_url: str | None
    metadata: dict[str, Any]
    image_url: str | None = None
    # The version it was built on (the run's base; None for none); by default the newest one.
    parent_id: str | None = LATEST
    # Against what a first version was compared (its sandbox's template); None: its parent.
    changes: dict[str, list[str]] | None = None
    # The app's build output (a framework template's dist/, out/...), served as its preview.
    build_files: dict[str, str] | None = None
    # The render check's picture of it (PNG), served at /api/fragments/<id>/screenshot.
    screenshot: bytes | None = None


def upsert_fragment(session: Session, message_id: str, values: FragmentValues) -> Fragment:
    """One fragment per assistant message: writing it again updates it."""
    existing = session.scalar(
        select(Fragment).where(Fragment.message_id == message_id).with_for_update()
    )
    target = existing or Fragment(id=new_id(), message_id=message_id)
    target.title = values.title
    target.files = values.files
    target.framework = values.framework
    target.sandbox_id = values.sandbox_id
    # A URL served by the web app names the fragment, whose id is only known here.
    url = values.sandbox_url
    target.sandbox_url = url.format(fragment_id=target.id) if url else None
    target.fragment_metadata = values.metadata
    target.image_url = values.image_url
    target.build_files = values.build_files
    target.screenshot = values.screenshot
    if existing is None:
        place_new(session, target, message_id, values.parent_id, values.changes)
        session.add(target)
    else:
        refresh_changes(session, target, values.changes)
    session.flush()
    return target
