"""What every example's stand-in system shares: one SQLite file per system, each method one short transaction,
every effect a row (with the key that made it, where the system takes one) that a run can be checked against.
Nothing here knows about Guard or the agent."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["System", "new_id"]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class System:
    """One system, one SQLite file. Each method is one short transaction."""

    # The column that holds the key a row was made with; `find_by_key` looks it up (a reconcile check).
    key_column = "idempotency_key"

    name = ""
    table = ""
    schema = ""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / f"{self.name}.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute(self.schema)

    @contextmanager
    def _db(self) -> Generator[sqlite3.Connection, None, None]:
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            with db:  # commit on success, roll back on error
                yield db
        finally:
            db.close()

    def rows(self) -> list[dict[str, Any]]:
        with self._db() as db:
            return [dict(r) for r in db.execute(f"SELECT * FROM {self.table} ORDER BY rowid")]

    def find_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        """The row this idempotency key made, or None: what a real API's "get by idempotency key" answers."""
        with self._db() as db:
            row = db.execute(
                f"SELECT * FROM {self.table} WHERE {self.key_column} = ? ORDER BY rowid LIMIT 1", (idempotency_key,)
            ).fetchone()
        return None if row is None else dict(row)
