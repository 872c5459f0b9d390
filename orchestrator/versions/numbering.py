"""Numbering versions 1, 2, 3… per project without gaps or duplicates.

The project's row is locked (PostgreSQL `SELECT … FOR UPDATE`; SQLite transactions here begin
IMMEDIATE, so writers are already serialized) and the unique (project_id, version) constraint
stands behind it: two runs finishing at the same moment get consecutive numbers.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Fragment, Project


def latest(session: Session, project_id: str) -> Fragment | None:
    """The project's newest version, or None for a project that has none yet."""
    return session.scalar(
        select(Fragment)
        .where(Fragment.project_id == project_id)
        .order_by(Fragment.version.desc())
        .limit(1)
    )


def next_version(session: Session, project_id: str) -> int:
    """The number the project's next version takes; holds the project's lock until commit."""
    session.execute(select(Project.id).where(Project.id == project_id).with_for_update())
    highest = session.scalar(
        select(func.max(Fragment.version)).where(Fragment.project_id == project_id)
    )
    return int(highest or 0) + 1
