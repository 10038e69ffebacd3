"""The smallest write steps every ledger transaction is built from: ids, chained events, compare-and-set."""

from __future__ import annotations

import os
import time
from typing import Any

from guard.errors import IllegalTransition
from guard.ledger.chain import GENESIS, event_hash
from guard.ledger.records import CallRecord
from guard.ledger.states import CallState, check_call_move

__all__ = ["EventIn", "append_events", "cas_call", "new_id"]

# (run_id, call_id, at, actor, entity, from_state, to_state, detail JSON)
EventIn = tuple[str | None, str | None, float, str, str, str | None, str, str]
_INSERT_EVENTS = ("INSERT INTO events (run_id, call_id, at, actor, entity, from_state, to_state, detail, "
                  "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def new_id(prefix: str) -> str:
    """A time-ordered id (UUIDv7 layout): inserts land at the end of the primary-key index."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{prefix}_{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def append_events(cur: Any, events: list[EventIn]) -> None:
    """Append events to the hash chain inside the caller's write transaction (which holds the lock)."""
    cur.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1")
    row = cur.fetchone()
    prev: str = row[0] if row else GENESIS
    out: list[tuple[Any, ...]] = []
    for run_id, call_id, at, actor, entity, src, dst, detail in events:
        digest = event_hash(prev, run_id, call_id, at, actor, entity, src, dst, detail)
        out.append((run_id, call_id, at, actor, entity, src, dst, detail, prev, digest))
        prev = digest
    if len(out) == 1:
        cur.execute(_INSERT_EVENTS, out[0])
    else:
        cur.executemany(_INSERT_EVENTS, out)


def cas_call(cur: Any, call: CallRecord, dst: CallState, now: float, actor: str,
sets: str = "", params: tuple[Any, ...] = (), detail: str = "{}") -> None:
    src = CallState(call.state)
    check_call_move(call.call_id, src, dst)
    extra = f", {sets}" if sets else ""
    cur.execute(f"UPDATE calls SET state = ?, updated_at = ?{extra} WHERE call_id = ? AND state = ?",
                (dst, now, *params, call.call_id, src))
    if cur.rowcount != 1:
        raise IllegalTransition(f"call {call.call_id} is no longer {src}", entity="call",
                                id=call.call_id, from_state=src, to_state=dst)
    append_events(cur, [(call.run_id, call.call_id, now, actor, "call", src, dst, detail)])
