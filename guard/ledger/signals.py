"""In-process wake-ups: a decision committed through any `Ledger` of this process wakes the agents of this
process that wait on the same database at once, instead of at their next poll.

Agents in other processes still find the decision by polling (`runtime/waiting.py`); this is the SQLite half of
the seam a PostgreSQL backend fills with LISTEN/NOTIFY, which wakes other processes too.
"""

from __future__ import annotations

import threading

__all__ = ["changed", "condition"]

_LOCK = threading.Lock()
_CONDITIONS: dict[str, threading.Condition] = {}


def condition(url: str) -> threading.Condition:
    """The condition notified when a decision on the database at `url` commits in this process."""
    with _LOCK:
        found = _CONDITIONS.get(url)
        if found is None:
            found = _CONDITIONS[url] = threading.Condition()
        return found


def changed(url: str) -> None:
    """Wake this process's waiters on `url` (call after the commit)."""
    cond = condition(url)
    with cond:
        cond.notify_all()
