"""notifications of pauses and stop rules, which belong to no run

A team's webhook is now also told when something pauses or is lifted, and when a stop rule trips: a team or
tool pause belongs to no run, so `notifications.run_id` may be empty. (Why a pause was lifted is kept in the
lift's event, chained, next to who and when on the pause row.)

Revision ID: 0008_pause_owners
Revises: 0007_streams
Create Date: 2026-12-04 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_pause_owners"
down_revision = "0007_streams"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("run_id", existing_type=sa.String(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM notifications WHERE run_id IS NULL")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("run_id", existing_type=sa.String(), nullable=False)
