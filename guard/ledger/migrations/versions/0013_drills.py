"""recovery drills, and pruning the stop-rule counts of runs that ended

`drills` keeps each `guard drill` of a team: when, by whom, the drill's run and incident, the records it touched,
and its three times (pause, blast radius found, clean state), or the step it failed at and why. Rows are appended,
never changed, each claimed by a chained event of the team's pauses stream.

`stop_marks` of a per-run `records` rule (scope = the run id) are deleted when their run ends (completed, finished by
hand, rolled back): an ended run takes no more calls, so nothing reads them again. `ix_stop_marks_scope` finds a
run's rows; the rows of runs that had ended before this revision are deleted here.

Revision ID: 0013_drills
Revises: 0012_incident_numbers (0010_brakes on this branch until 0011 and 0012 land; the integrator re-chains)
Create Date: 2026-12-05 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_drills"
down_revision = "0012_incident_numbers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drills",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("drilled_by", sa.String(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("pause_s", sa.Float(), nullable=True),
        sa.Column("radius_s", sa.Float(), nullable=True),
        sa.Column("clean_s", sa.Float(), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
    )
    op.create_index("ix_drills_team", "drills", ["team", "id"])
    op.create_index("ix_stop_marks_scope", "stop_marks", ["scope"])
    op.execute(
        "DELETE FROM stop_marks WHERE scope IN "
        "(SELECT run_id FROM runs WHERE state IN ('completed', 'finished_by_hand', 'rolled_back'))"
    )


def downgrade() -> None:
    op.drop_index("ix_stop_marks_scope", table_name="stop_marks")
    op.drop_index("ix_drills_team", table_name="drills")
    op.drop_table("drills")
