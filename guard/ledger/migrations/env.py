"""Alembic environment for the ledger. Run through `guard db upgrade`, which passes the connection in."""

from __future__ import annotations

from alembic import context

from guard.ledger.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when alembic is run by hand
    raise RuntimeError("run migrations with `guard db upgrade`, which supplies the database connection")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
