"""Which clock judges an in-flight call's lease: when it runs out, whether a takeover may happen, whether a write
under it is still allowed.

On PostgreSQL the workers run on many hosts, and a host's clock can be minutes off. Every lease is therefore judged
by the database server's clock (`clock_timestamp()`, read inside the statement that acts on it, or for a new call's
lease by the first statement of its offer's transaction): a lease is written as "the server's now + ttl", a takeover
happens only when the row's lease has run out by the server's now, and every write under a lease (an attempt, an
external id, the outcome, a heartbeat) is refused once the lease ran out by the server's now, even before another
worker took it over. A worker whose own clock is skewed neither takes a live call over nor keeps writing after its
lease expired.

On SQLite every process runs on the machine holding the file, with one clock: leases are judged by the worker's
clock as before (a value passed in), and a write is fenced by the lease token alone (refused after a takeover).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["DATABASE_CLOCK", "WORKER_CLOCK", "Beat", "LeaseBeat", "LeaseClock"]


class _Clocked(Protocol):
    def clock(self, cur: Any) -> float: ...


@dataclass(frozen=True, slots=True)
class LeaseClock:
    """How the ledger's SQL says "now" for leases.

    `now_sql` is `?` (the worker's time, a parameter: `args(now)` supplies it) or an expression of the database
    clock (no parameter). `fence` is the condition every write under a lease adds: nothing on the worker's clock,
    "the lease has not run out by the database's now" on the database's.
    """

    now_sql: str
    fence: str = ""

    def args(self, now: float) -> tuple[float, ...]:
        """The parameters `now_sql` takes: the worker's `now`, or none."""
        return (now,) if self.now_sql == "?" else ()

    def pick(self, worker_now: float, database_now: float) -> float:
        """Now by this clock, of the worker's time and the database's (read by a statement made anyway)."""
        return worker_now if self.now_sql == "?" else database_now

    def now(self, backend: _Clocked, cur: Any) -> float:
        """Now by this clock, in Unix seconds (the database clock costs a round trip; the worker's does not)."""
        return time.time() if self.now_sql == "?" else backend.clock(cur)


WORKER_CLOCK = LeaseClock("?")
_DB_NOW = "extract(epoch FROM clock_timestamp())::float8"
# A call nobody holds a lease on (failed, or in doubt and released for an operator) is fenced by its token alone.
DATABASE_CLOCK = LeaseClock(_DB_NOW, fence=f" AND (lease_expires_at IS NULL OR lease_expires_at > {_DB_NOW})")


class Beat(StrEnum):
    """What a heartbeat found, judged in its own transaction: `held` (renewed); `ended` (the call left `started`
    under the worker's own token: it ended the call itself, e.g. completed it after the heartbeat read its calls);
    `taken_over` (another worker holds it: a newer token); `ran_out` (still the worker's token and `started`, but
    its lease ran out by the database clock before it was renewed, and nobody took it over yet)."""

    HELD = "held"
    ENDED = "ended"
    TAKEN_OVER = "taken_over"
    RAN_OUT = "ran_out"


@dataclass(frozen=True, slots=True)
class LeaseBeat:
    """A heartbeat's outcome, and who holds the call when it was taken over (`holder`)."""

    beat: Beat
    holder: str | None = None
