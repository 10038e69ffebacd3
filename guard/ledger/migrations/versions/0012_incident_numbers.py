"""indexes for the three numbers' window scan (`guard report --since 7d`, the service's `/metrics`)

The three numbers read a window of the ledger: the calls offered since a time, the failure events recorded since
then, the approvals decided since then. Without an index each was a scan of the whole table, growing with the
ledger however short the window. Three indexes, each as small as the question allows:

- `ix_calls_offered_at`: every call's offer time (the one index every call pays for: one B-tree insert);
- `ix_events_failures`: partial, only the call events that moved to `failed` or `in_doubt` (a call that went
  well never enters it, so the hot path's events are spared);
- `ix_approvals_decided`: the approvals' decision time (approvals are rare next to calls).

Revision ID: 0012_incident_numbers
Revises: 0010_brakes
Create Date: 2026-12-05 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_incident_numbers"
down_revision = "0011_slack_replays"
branch_labels = None
depends_on = None

FAILURES = "entity = 'call' AND to_state IN ('failed', 'in_doubt')"


def upgrade() -> None:
    op.create_index("ix_calls_offered_at", "calls", ["offered_at"], unique=False)
    op.create_index(
        "ix_events_failures",
        "events",
        ["at"],
        unique=False,
        sqlite_where=sa.text(FAILURES),
        postgresql_where=sa.text(FAILURES),
    )
    op.create_index("ix_approvals_decided", "approvals", ["decided_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_approvals_decided", table_name="approvals")
    op.drop_index("ix_events_failures", table_name="events")
    op.drop_index("ix_calls_offered_at", table_name="calls")
