"""the seeds' stop rules on named arguments, and staged restarts

`stop_marks` holds what the stop rules on named arguments count: one row per distinct value a `records` rule saw
in its run or window, one row per call a `duplicates` rule saw in its window (older rows are pruned as new ones
come). Values are kept as digests only. Checked and counted in the transaction that offers a call, as
`rate_windows` is.

`restarts` holds staged restarts of a pause point (stages such as 1,10,100, the current stage, how many calls it
let through, passing / holding / failed / done, the quiet period); `restart_calls` the calls each stage let
through, so a failure of one of them stops its restart at once. `shadow_counts` counts what rules in `mode: shadow`
would have decided otherwise, per team and rule (the metric `guard_shadow_verdicts_total`).

Revision ID: 0010_brakes
Revises: 0009_incidents
Create Date: 2026-12-04 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_brakes"
down_revision = "0009_incidents"
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
    op.create_table(
        "restarts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("stages", sa.String(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("quiet", sa.Float(), nullable=True),
        sa.Column("held_at", sa.Float(), nullable=True),
        sa.Column("started_by", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_restarts_point", "restarts", ["scope", "target", "state"])
    op.create_table(
        "shadow_counts",
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("verdicts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("team", "rule", "kind"),
    )
    op.create_table(
        "restart_calls",
        sa.Column("call_id", sa.String(), primary_key=True),
        sa.Column("restart_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("restart_calls")
    op.drop_table("shadow_counts")
    op.drop_index("ix_restarts_point", table_name="restarts")
    op.drop_table("restarts")
    op.drop_index("ix_stop_marks_lookup", table_name="stop_marks")
    op.drop_table("stop_marks")
