"""Reading a project's versions and what one changed, always scoped to the owner."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Fragment
from orchestrator import messages, projects
from orchestrator.contract import FileDiff, FragmentDiff
from orchestrator.versions import changes


def list_versions(session: Session, user_id: str, project_id: str) -> list[Fragment]:
    projects.get_project(session, user_id, project_id)
    query = select(Fragment).where(Fragment.project_id == project_id)
    return list(session.scalars(query.order_by(Fragment.version)))


def owned(session: Session, user_id: str, fragment_id: str) -> Fragment:
    """The caller's fragment; another user's answers as a missing one."""
    return messages.owned_fragment(session, user_id, fragment_id)[0]


def diff(session: Session, user_id: str, fragment_id: str) -> FragmentDiff:
    fragment = owned(session, user_id, fragment_id)
    parent = session.get(Fragment, fragment.parent_id) if fragment.parent_id else None
    if parent is not None:
        before = parent.files or {}
    else:  # a first version: against its starting files (its template's), as its `changes`
        kept = (fragment.fragment_metadata or {}).get(changes.STARTING_FILES)
        before = changes.starting_point(fragment.files or {}, fragment.changes or {}, kept)
    return FragmentDiff(
        fragment_id=fragment.id,
        parent_id=fragment.parent_id,
        files=[FileDiff(**item) for item in changes.file_diffs(before, fragment.files or {})],
    )
