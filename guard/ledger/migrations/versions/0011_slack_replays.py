"""signed requests already received, so that a replay is refused by every replica

`seen_requests` holds one row per signed request the approval service accepted (a Slack interaction: its
`X-Slack-Signature`), keyed by where it came from and its signature. Inserting a key that is already there is a
replay; the database's uniqueness decides it, so two replicas behind one load balancer refuse the same replay.
Rows are pruned once the request's timestamp is too old to be accepted anyway (`expires_at`). Not tamper-covered:
a cache of what was seen, not a record of what happened.

Revision ID: 0011_slack_replays
Revises: 0010_brakes
Create Date: 2026-12-05 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_slack_replays"
down_revision = "0010_brakes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_requests",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("signature", sa.String(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("source", "signature"),
    )
    op.create_index("ix_seen_requests_expires_at", "seen_requests", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_requests_expires_at", table_name="seen_requests")
    op.drop_table("seen_requests")
