"""imports; projects.publish_slug, published_fragment_id, published_url, published_at

DESIGN section 18: imports of Git repositories, and publishing at a stable URL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "project_id",
            sa.String(36),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("ref", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("fragment_id", sa.String(36), nullable=True),
        sa.Column("message_id", sa.String(36), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_imports_project_id", "imports", ["project_id"])
    op.create_index("ix_imports_running", "imports", ["status", "heartbeat_at"])
    # Plain ADD COLUMNs (nullable, no default): no table rebuild on SQLite; the unique slug is
    # an index of its own for the same reason.
    op.add_column("projects", sa.Column("publish_slug", sa.String(64), nullable=True))
    op.add_column("projects", sa.Column("published_fragment_id", sa.String(36), nullable=True))
    op.add_column("projects", sa.Column("published_url", sa.Text(), nullable=True))
    op.add_column("projects", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("uq_projects_publish_slug", "projects", ["publish_slug"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_projects_publish_slug", table_name="projects")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("published_at")
        batch_op.drop_column("published_url")
        batch_op.drop_column("published_fragment_id")
        batch_op.drop_column("publish_slug")
    op.drop_index("ix_imports_running", table_name="imports")
    op.drop_index("ix_imports_project_id", table_name="imports")
    op.drop_table("imports")
