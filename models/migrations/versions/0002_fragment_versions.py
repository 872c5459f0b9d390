"""fragments become versions: project_id, version, parent_id, changes

Existing fragments become their project's versions in creation order; each one's parent is the
one before it, and its changes are computed against that parent (every file added for the first).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _changes(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    """A copy of orchestrator.versions.changes.compute: a migration must not import the app."""
    return {
        "added": sorted(set(after) - set(before)),
        "modified": sorted(p for p in set(after) & set(before) if after[p] != before[p]),
        "deleted": sorted(set(before) - set(after)),
    }


def upgrade() -> None:
    with op.batch_alter_table("fragments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("project_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("parent_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("changes", sa.JSON(), nullable=True))

    _backfill(op.get_bind())

    with op.batch_alter_table("fragments", schema=None) as batch_op:
        batch_op.alter_column("project_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.alter_column("version", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("changes", existing_type=sa.JSON(), nullable=False)
        batch_op.create_foreign_key(
            "fk_fragments_project", "projects", ["project_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_unique_constraint("uq_fragments_project_version", ["project_id", "version"])


def _backfill(connection: Any) -> None:
    fragments = sa.table(
        "fragments",
        sa.column("id", sa.String),
        sa.column("message_id", sa.String),
        sa.column("files", sa.JSON),
        sa.column("created_at", sa.DateTime),
        sa.column("project_id", sa.String),
        sa.column("version", sa.Integer),
        sa.column("parent_id", sa.String),
        sa.column("changes", sa.JSON),
    )
    messages = sa.table("messages", sa.column("id", sa.String), sa.column("project_id", sa.String))
    rows = connection.execute(
        sa.select(fragments.c.id, fragments.c.files, messages.c.project_id)
        .join(messages, messages.c.id == fragments.c.message_id)
        .order_by(messages.c.project_id, fragments.c.created_at, fragments.c.id)
    ).all()
    previous: tuple[str, str, dict[str, str]] | None = None  # (project, fragment id, files)
    version = 0
    for fragment_id, files, project_id in rows:
        files = files or {}
        if previous is None or previous[0] != project_id:
            version, parent, before = 1, None, {}
        else:
            version, parent, before = version + 1, previous[1], previous[2]
        connection.execute(
            sa.update(fragments)
            .where(fragments.c.id == fragment_id)
            .values(
                project_id=project_id,
                version=version,
                parent_id=parent,
                changes=_changes(before, files),
            )
        )
        previous = (project_id, fragment_id, files)


def downgrade() -> None:
    with op.batch_alter_table("fragments", schema=None) as batch_op:
        batch_op.drop_constraint("uq_fragments_project_version", type_="unique")
        batch_op.drop_constraint("fk_fragments_project", type_="foreignkey")
        batch_op.drop_column("changes")
        batch_op.drop_column("parent_id")
        batch_op.drop_column("version")
        batch_op.drop_column("project_id")
