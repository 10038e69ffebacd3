"""a partial index of the calls recovery looks for (started, in doubt)

Recovery (every worker's start, `guard recover`) asks for the calls left `started` or `in_doubt`. Without an
index that was a scan of every call ever made: about 0.6 s at a million calls, growing with the ledger. The
index holds only those calls, so it stays as small as the work in flight; a call enters it when it starts
and leaves it when it ends.

Revision ID: 0005_unsettled_calls
Revises: 0004_notifications
Create Date: 2026-11-22 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_unsettled_calls"
down_revision = "0004_notifications"
branch_labels = None
depends_on = None

UNSETTLED = "state IN ('started', 'in_doubt')"


def upgrade() -> None:
    op.create_index(
        "ix_calls_unsettled",
        "calls",
        ["state"],
        unique=False,
        sqlite_where=sa.text(UNSETTLED),
        postgresql_where=sa.text(UNSETTLED),
    )


def downgrade() -> None:
    op.drop_index("ix_calls_unsettled", table_name="calls")
