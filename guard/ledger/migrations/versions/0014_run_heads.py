"""a run's stream keeps no head row on SQLite

On SQLite a run's stream finds its head in its own events (its last one, by `ix_events_run`) inside the write
transaction that extends it, since SQLite has one writer at a time: the `stream_heads` row each commit updated cost
a statement and a dirty page, about a tenth of a guarded call (guard.ledger.moves.heads_kept). The head rows of
the runs' streams are deleted here on SQLite; PostgreSQL keeps them (their row lock orders the writers of one
stream). Seals find the runs' moved heads among the events after the previous seal (guard.ledger.seals).

Revision ID: 0014_run_heads
Revises: 0013_drills
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0014_run_heads"
down_revision = "0013_drills"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DELETE FROM stream_heads WHERE stream >= 'run:' AND stream < 'run;'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Each run stream's head again as a row: its last event's place and hash (SQLite takes the bare column
        # `hash` from the row holding max(seq)).
        op.execute(
            "INSERT INTO stream_heads (stream, length, head) SELECT stream, max(seq), hash FROM events "
            "WHERE stream >= 'run:' AND stream < 'run;' GROUP BY stream"
        )
