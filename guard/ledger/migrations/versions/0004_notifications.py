"""webhook notifications of the teams' channels; page sessions ended on the server

One row per ledger event a team's webhook was told of (a call waiting for approval, a run halted): unique on the
event, so two notifiers never send the same event twice. The row says what became of it (sent, failed after its
retries, skipped because it was decided first), how many attempts it took and the last error. The target is
the webhook's scheme and host only: a Slack webhook's path is a secret. `notify_cursor` keeps how far the
notifier has read the events. `ended_sessions` holds the page sessions signed out, until their cookies would
have expired anyway, so a copy of a cookie stops working at sign-out.

Revision ID: 0004_notifications
Revises: 0003_reviewer_tokens
Create Date: 2026-11-22 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_notifications"
down_revision = "0003_reviewer_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=True),
        sa.Column("approval_id", sa.String(), nullable=True),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_event_id"), ["event_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_notifications_run_id"), ["run_id"], unique=False)
    op.create_table(
        "notify_cursor",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "ended_sessions",
        sa.Column("nonce", sa.String(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )


def downgrade() -> None:
    op.drop_table("ended_sessions")
    op.drop_table("notify_cursor")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_run_id"))
        batch_op.drop_index(batch_op.f("ix_notifications_event_id"))
    op.drop_table("notifications")
