"""How many times a media file's analysis was started: a file that kills the process is failed
after ``analysis.max_attempts`` instead of resumed at every start

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media_files") as table:
        table.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("media_files") as table:
        table.drop_column("attempts")
