"""fragments.build_files: a framework app's build output, served as its preview

NULL for every existing fragment (static apps, served from their files as before).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no default): SQLite needs no table rebuild for it.
    op.add_column("fragments", sa.Column("build_files", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fragments", schema=None) as batch_op:
        batch_op.drop_column("build_files")
