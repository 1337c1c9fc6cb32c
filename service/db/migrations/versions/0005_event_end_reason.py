"""Why an event ended: its label left fake, its track or sound went, the stream went down, dfstream
stopped, or a restart found it left open by a run that died

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as table:
        table.add_column(sa.Column("end_reason", sa.String(length=16), nullable=True))
        table.create_index("ix_events_open", ["stream", "ended_at"])


def downgrade() -> None:
    with op.batch_alter_table("events") as table:
        table.drop_index("ix_events_open")
        table.drop_column("end_reason")
