"""How many connections one process keeps to a database server: the pool's size, its overflow and how long a
thread waits for a connection when every one is in use.

`Guard(db_pool_size=..., db_pool_overflow=..., db_pool_timeout=...)`, else `GUARD_DB_POOL_SIZE`,
`GUARD_DB_POOL_OVERFLOW` and `GUARD_DB_POOL_TIMEOUT`, else 10, 10 and 30 seconds (SQLAlchemy's meanings: `size`
connections are kept open when idle, up to `overflow` more are opened under load and closed when given back, and
a thread that finds all `size + overflow` in use waits up to `timeout` seconds, then gets `LedgerBusy`). Applied
to PostgreSQL, where every connection is a server process that `max_connections` counts for all workers and
replicas together; a SQLite file's connections are not limited (they cost the server nothing).

The LISTEN connection that wakes waiting agents (`guard.ledger.signals`) is one more per process, outside the pool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from guard.errors import GuardUsageError

__all__ = ["POOL_ENV", "PoolLimits"]

POOL_ENV = ("GUARD_DB_POOL_SIZE", "GUARD_DB_POOL_OVERFLOW", "GUARD_DB_POOL_TIMEOUT")
_DEFAULTS = (10, 10, 30.0)


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """The pool of one process: `size` connections kept, `overflow` more under load, `timeout` seconds a thread
    waits for one when all are in use. At most `size + overflow` connections are open (plus the LISTEN one)."""

    size: int = _DEFAULTS[0]
    overflow: int = _DEFAULTS[1]
    timeout: float = _DEFAULTS[2]

    def __post_init__(self) -> None:
        if self.size < 1 or self.overflow < 0 or not self.timeout > 0:
            raise GuardUsageError(
                f"the ledger's connection pool needs size >= 1, overflow >= 0 and timeout > 0 (got size={self.size}, "
                f"overflow={self.overflow}, timeout={self.timeout})",
                size=self.size,
                overflow=self.overflow,
                timeout=self.timeout,
            )

    @property
    def most(self) -> int:
        """The most connections open at once."""
        return self.size + self.overflow

    @classmethod
    def resolve(cls, size: int | None = None, overflow: int | None = None, timeout: float | None = None) -> PoolLimits:
        """Each limit from the argument, else its environment variable, else the default; a variable that is
        not a number is refused with its name (never silently replaced by the default)."""
        given = (size, overflow, timeout)
        values: list[float] = []
        for name, value, default in zip(POOL_ENV, given, _DEFAULTS, strict=True):
            if value is None:
                text = os.environ.get(name, "").strip()
                try:
                    value = type(default)(text) if text else default
                except ValueError as exc:
                    raise GuardUsageError(f"{name}={text!r}: not a number", variable=name, value=text) from exc
            values.append(value)
        return cls(int(values[0]), int(values[1]), float(values[2]))
