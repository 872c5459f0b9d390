"""fragments.screenshot: the render check's PNG of a version (DESIGN section 16)

NULL for every existing fragment (no check took one): its endpoint answers 404 for them.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no default): SQLite needs no table rebuild for it.
    op.add_column("fragments", sa.Column("screenshot", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fragments", schema=None) as batch_op:
        batch_op.drop_column("screenshot")
