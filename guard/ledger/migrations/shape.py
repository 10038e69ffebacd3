"""The shape a new migration creates a table in, written once: an integer key `id`, typed columns that say whether
they may be empty, and indexes named `ix_<table>_<what>`; `create()` in `upgrade()` and `drop()` in `downgrade()`
undo each other exactly. The SQLModel table in `guard.ledger.tables` (or its sibling) stays the source the code
reads; the migration says the same in this shape.

For new migrations only: an old migration's text is history the integrator chains, never rewritten.

    DRILLS = NewTable(
        "drills",
        (text("team"), text("run_id", null=True), real("started_at"), whole("records")),
        indexes={"team": ("team", "id")},
    )

    def upgrade() -> None:
        DRILLS.create()

    def downgrade() -> None:
        DRILLS.drop()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic import op

__all__ = ["Col", "NewTable", "real", "text", "whole"]


@dataclass(frozen=True, slots=True)
class Col:
    """One column: its name, SQL type and whether it may be NULL. Made into a new `sa.Column` each time a table
    is created (a column object belongs to one table only, and a test may upgrade, downgrade and upgrade again)."""

    name: str
    kind: type[sa.types.TypeEngine[Any]]
    null: bool = False

    def column(self) -> sa.Column[Any]:
        return sa.Column(self.name, self.kind(), nullable=self.null)


def text(name: str, *, null: bool = False) -> Col:
    return Col(name, sa.String, null)


def real(name: str, *, null: bool = False) -> Col:
    """A number with a fraction: Unix seconds, durations."""
    return Col(name, sa.Float, null)


def whole(name: str, *, null: bool = False) -> Col:
    """A whole number: counts, sequence numbers."""
    return Col(name, sa.Integer, null)


@dataclass(frozen=True, slots=True)
class NewTable:
    """A table a migration adds: `id` (an integer primary key the database assigns) first, then `columns`; each of
    `indexes` (`what` -> its columns) is named `ix_<table>_<what>`."""

    name: str
    columns: tuple[Col, ...]
    indexes: Mapping[str, tuple[str, ...]] = field(default_factory=dict[str, tuple[str, ...]])

    def index_names(self) -> list[str]:
        return [f"ix_{self.name}_{what}" for what in self.indexes]

    def create(self) -> None:
        """`op.create_table` and `op.create_index` for each index, inside the migration's transaction."""
        op.create_table(
            self.name,
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            *(c.column() for c in self.columns),
        )
        for index, columns in zip(self.index_names(), self.indexes.values(), strict=True):
            op.create_index(index, self.name, list(columns))

    def drop(self) -> None:
        """What `create` made, undone in reverse order."""
        for index in reversed(self.index_names()):
            op.drop_index(index, table_name=self.name)
        op.drop_table(self.name)
