"""the seeds' stop rules on named arguments

`stop_marks` holds what the stop rules on named arguments count: one row per distinct value a `records` rule saw
in its run or window, one row per call a `duplicates` rule saw in its window (older rows are pruned as new ones
come). Values are kept as digests only. Checked and counted in the transaction that offers a call, as
`rate_windows` is.

Revision ID: 0010_brakes
Revises: 0008_pause_owners
Create Date: 2026-12-04 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_brakes"
down_revision = "0008_pause_owners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stop_marks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("mark", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_stop_marks_lookup", "stop_marks", ["team", "rule", "scope", "mark"])


def downgrade() -> None:
    op.drop_index("ix_stop_marks_lookup", table_name="stop_marks")
    op.drop_table("stop_marks")
