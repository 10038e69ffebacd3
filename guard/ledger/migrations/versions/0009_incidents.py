"""incidents: a named scope with its owner and three times, verdicts per touched record, a shared note log

Revision ID: 0009_incidents
Revises: 0008_pause_owners
Create Date: 2026-12-04 23:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from guard.errors import LedgerNotReady

revision = "0009_incidents"
down_revision = "0008_pause_owners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("scope_json", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("opened_by", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("paused_at", sa.Float(), nullable=True),
        sa.Column("last_changed_at", sa.Float(), nullable=True),
        sa.Column("next_update_at", sa.Float(), nullable=True),
        sa.Column("snapshot_path", sa.String(), nullable=True),
        sa.Column("snapshot_digest", sa.String(), nullable=True),
        sa.Column("snapshot_records", sa.Integer(), nullable=True),
        sa.Column("snapshot_at", sa.Float(), nullable=True),
        sa.Column("snapshot_by", sa.String(), nullable=True),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.Column("closed_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incidents_team"), ["team"], unique=False)
    op.create_table(
        "incident_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("verdict", sa.String(), nullable=False),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("judged_by", sa.String(), nullable=False),
        sa.Column("judged_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("incident_verdicts", schema=None) as batch_op:
        batch_op.create_index("ix_incident_verdicts_record", ["incident_id", "call_id", "id"], unique=False)
    op.create_table(
        "incident_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("incident_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_notes_incident_id"), ["incident_id"], unique=False)


def downgrade() -> None:
    bind = op.get_bind()
    held = bind.execute(sa.text("SELECT count(*) FROM incidents")).scalar()
    if held:  # their claims are chained in the incidents' streams: dropping the rows would read as tampering
        raise LedgerNotReady(
            f"{held} incident(s) are recorded; 0008 has no place for them",
            url=str(bind.engine.url),
            revision=revision,
            needed=down_revision,
        )
    op.drop_table("incident_notes")
    op.drop_table("incident_verdicts")
    op.drop_table("incidents")
