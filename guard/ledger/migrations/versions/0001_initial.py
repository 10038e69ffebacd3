"""initial ledger schema

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22 19:18:04.715323
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("call_id", sa.String(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("from_state", sa.String(), nullable=True),
        sa.Column("to_state", sa.String(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_run", ["run_id", "id"], unique=False)
    op.create_table(
        "pauses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("paused_by", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("lifted_at", sa.Float(), nullable=True),
        sa.Column("lifted_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pauses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pauses_lifted_at"), ["lifted_at"], unique=False)
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("source_event_id", sa.String(), nullable=True),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("status_label", sa.String(), nullable=True),
        sa.Column("next_safe_action", sa.String(), nullable=True),
        sa.Column("requires_review", sa.Boolean(), nullable=False),
        sa.Column("error_summary", sa.String(), nullable=True),
        sa.Column("created_by", sa.String(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_team"), ["team"], unique=False)
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("tool", sa.String(), nullable=False),
        sa.Column("side_effect", sa.String(), nullable=True),
        sa.Column("rule", sa.String(), nullable=True),
        sa.Column("policy_version", sa.String(), nullable=False),
        sa.Column("args_json", sa.String(), nullable=False),
        sa.Column("args_hash", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("requested_key", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("external_ids", sa.String(), nullable=False),
        sa.Column("result_json", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("compensates_call_id", sa.String(), nullable=True),
        sa.Column("requested_by", sa.String(), nullable=True),
        sa.Column("offered_at", sa.Float(), nullable=False),
        sa.Column("approved_at", sa.Float(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.run_id"],
        ),
        sa.PrimaryKeyConstraint("call_id"),
        sa.UniqueConstraint("run_id", "seq", name="uq_calls_run_seq"),
        sa.UniqueConstraint("team", "idempotency_key", name="uq_calls_team_key"),
    )
    op.create_table(
        "manual_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=True),
        sa.Column("operator", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.run_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("manual_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_manual_actions_run_id"), ["run_id"], unique=False)
    op.create_table(
        "approvals",
        sa.Column("approval_id", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("tool", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=True),
        sa.Column("args_hash", sa.String(), nullable=False),
        sa.Column("args_json", sa.String(), nullable=False),
        sa.Column("roles", sa.String(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=True),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("approved_args_hash", sa.String(), nullable=True),
        sa.Column("approved_args_json", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.call_id"],
        ),
        sa.PrimaryKeyConstraint("approval_id"),
        sa.UniqueConstraint("call_id"),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approvals_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_approvals_state"), ["state"], unique=False)
    op.create_table(
        "approval_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approval_id", sa.String(), nullable=False),
        sa.Column("reviewer", sa.String(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("args_hash", sa.String(), nullable=False),
        sa.Column("edited_args_json", sa.String(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approvals.approval_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("approval_id", "reviewer", name="uq_decision_reviewer"),
    )


def downgrade() -> None:
    op.drop_table("approval_decisions")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approvals_state"))
        batch_op.drop_index(batch_op.f("ix_approvals_run_id"))
    op.drop_table("approvals")
    with op.batch_alter_table("manual_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_manual_actions_run_id"))
    op.drop_table("manual_actions")
    op.drop_table("calls")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_team"))
        batch_op.drop_index(batch_op.f("ix_runs_state"))
    op.drop_table("runs")
    with op.batch_alter_table("pauses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pauses_lifted_at"))
    op.drop_table("pauses")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_run")
    op.drop_table("events")
