"""The table shape for new migrations (`guard.ledger.migrations.shape`) makes what the migrations wrote by hand:
`drills`, described in it, has the columns, types, nullability, key and indexes migration 0013 gave it; and `drop`
undoes `create` whole, so a migration that goes down and up again works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from guard.ledger import upgrade
from guard.ledger.migrations.shape import NewTable, real, text, whole

DRILLS = NewTable(
    "drills",
    (
        text("team"),
        text("run_id", null=True),
        text("incident_id", null=True),
        text("state"),
        text("drilled_by"),
        real("started_at"),
        real("pause_s", null=True),
        real("radius_s", null=True),
        real("clean_s", null=True),
        whole("records"),
        text("detail"),
    ),
    indexes={"team": ("team", "id")},
)


def _described(engine: sa.Engine, table: str) -> dict[str, Any]:
    found = sa.inspect(engine)
    return {
        "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
        "key": found.get_pk_constraint(table)["constrained_columns"],
        "indexes": sorted((i["name"], tuple(i["column_names"])) for i in found.get_indexes(table)),
    }


def _with_ops(engine: sa.Engine, *steps: str) -> None:
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        for step in steps:
            getattr(DRILLS, step)()


def test_a_table_in_the_shape_is_made_as_the_migrations_made_it_by_hand(tmp_path: Path) -> None:
    migrated = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(migrated)
    shaped = sa.create_engine(f"sqlite:///{tmp_path / 'shaped.db'}")
    _with_ops(shaped, "create")
    expected = _described(sa.create_engine(migrated), "drills")
    expected["indexes"] = [i for i in expected["indexes"] if i[0].startswith("ix_drills_")]
    assert _described(shaped, "drills") == expected


def test_drop_undoes_create_whole_so_a_migration_can_go_down_and_up_again(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shaped.db'}")
    _with_ops(engine, "create", "drop", "create", "drop")
    found = sa.inspect(engine)
    assert "drills" not in found.get_table_names()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall() == []
