"""Voice: an event's modality (face or voice), the sound of a voice event's peak window, and an
uploaded file's voice result

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as table:
        table.add_column(sa.Column("modality", sa.String(length=8), nullable=False, server_default="face"))
    op.create_table(
        "event_audio",
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("wav", sa.LargeBinary(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("media_files") as table:
        table.add_column(sa.Column("voice", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media_files") as table:
        table.drop_column("voice")
    op.drop_table("event_audio")
    with op.batch_alter_table("events") as table:
        table.drop_column("modality")
