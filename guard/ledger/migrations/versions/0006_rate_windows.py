"""rate windows of the policies' stop rules

One row per team and tool pattern with a `stop.rate` rule: the window the count is in (the database clock
divided by the rule's period) and the calls made in it. Checked and counted in the transaction that offers a
call, so workers sharing the ledger share the limit.

Revision ID: 0006_rate_windows
Revises: 0005_unsettled_calls
Create Date: 2026-11-23 00:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_rate_windows"
down_revision = "0005_unsettled_calls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_windows",
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("pattern", sa.String(), nullable=False),
        sa.Column("period", sa.Float(), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("team", "pattern", "period"),
    )


def downgrade() -> None:
    op.drop_table("rate_windows")
