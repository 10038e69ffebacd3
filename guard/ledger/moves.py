"""The smallest write steps every ledger transaction is built from: ids, chained events, compare-and-set."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from guard.errors import GuardUsageError, IllegalTransition
from guard.ledger.chain import GENESIS, event_hash
from guard.ledger.records import CallRecord
from guard.ledger.states import CallState, RunState, check_call_move, check_run_move

__all__ = ["EventIn", "RunClose", "append_events", "cas_call", "move_run", "move_run_if", "new_id"]

_random = random.Random()  # seeded from os.urandom at import; reseeded after fork below
os.register_at_fork(after_in_child=_random.seed)

# (run_id, call_id, at, actor, entity, from_state, to_state, detail JSON)
EventIn = tuple[str | None, str | None, float, str, str, str | None, str, str]
_EVENT_COLS = "run_id, call_id, at, actor, entity, from_state, to_state, detail, hash"
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
# One INSERT statement per batch size (SQLite caches each prepared statement): a multi-row VALUES is
# cheaper than executemany for the 1-4 events a step appends.
_INSERT_EVENTS = {n: f"INSERT INTO events ({_EVENT_COLS}) VALUES {', '.join([_ROW] * n)}" for n in range(1, 9)}


def new_id(prefix: str) -> str:
    """A time-ordered id (UUIDv7 layout): inserts land at the end of the primary-key index."""
    ms = time.time_ns() // 1_000_000
    rand = _random.getrandbits(80)  # uniqueness, not secrecy: ids are not credentials
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
        out.append((run_id, call_id, at, actor, entity, src, dst, detail, digest))
        prev = digest
    sql = _INSERT_EVENTS.get(len(out))
    if sql is None:
        cur.executemany(_INSERT_EVENTS[1], out)
    else:
        cur.execute(sql, [value for row in out for value in row])


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


def move_run_if(cur: Any, run_id: str, src: RunState, dst: RunState, now: float, actor: str,
                why: str) -> list[EventIn]:
    """Move the run `src -> dst` if it is in `src` (compare-and-set); the event to append, if it moved."""
    check_run_move(run_id, src, dst)
    cur.execute("UPDATE runs SET state = ?, updated_at = ? WHERE run_id = ? AND state = ?", (dst, now, run_id, src))
    if cur.rowcount != 1:
        return []
    return [(run_id, None, now, actor, "run", src, dst, json.dumps({"why": why}))]


@dataclass(frozen=True, slots=True)
class RunClose:
    """How a run ends or halts: its state and what an operator must know."""

    state: RunState
    status_label: str | None = None
    error_summary: str | None = None
    next_safe_action: str | None = None
    requires_review: bool = False


def move_run(cur: Any, run_id: str, close: RunClose, now: float, actor: str, *,
             expect: frozenset[RunState] | None = None, detail: dict[str, Any] | None = None) -> list[EventIn]:
    """Move the run to `close.state` (checked against the table, and against `expect` when given) inside the
    caller's write transaction; the event to append. In the same state, only its description is updated."""
    cur.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,))
    row = cur.fetchone()
    if row is None:
        raise GuardUsageError(f"no run {run_id} in the ledger", run_id=run_id)
    src = RunState(row[0])
    if expect is not None and src not in expect:
        raise IllegalTransition(f"run {run_id} is {src}, expected one of {sorted(expect)}",
                                entity="run", id=run_id, from_state=src, to_state=close.state)
    if src == close.state:
        cur.execute("UPDATE runs SET status_label = ?, error_summary = ?, next_safe_action = ?, requires_review = ?, "
                    "updated_at = ? WHERE run_id = ?", (close.status_label, close.error_summary,
                                                        close.next_safe_action, close.requires_review, now, run_id))
        return []
    check_run_move(run_id, src, close.state)
    cur.execute("UPDATE runs SET state = ?, status_label = ?, error_summary = ?, next_safe_action = ?, "
                "requires_review = ?, updated_at = ? WHERE run_id = ? AND state = ?",
                (close.state, close.status_label, close.error_summary, close.next_safe_action,
                 close.requires_review, now, run_id, src))
    if cur.rowcount != 1:
        raise IllegalTransition(f"run {run_id} changed state concurrently", entity="run", id=run_id,
                                from_state=src, to_state=close.state)
    info = {"status_label": close.status_label, "error_summary": close.error_summary, **(detail or {})}
    return [(run_id, None, now, actor, "run", src, close.state, json.dumps(info))]
