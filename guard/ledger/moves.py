"""The smallest write steps every ledger transaction is built from: ids, chained events, compare-and-set."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from guard.canonical import fast_encoder
from guard.errors import GuardUsageError, IllegalTransition
from guard.ledger.chain import GENESIS, event_hash
from guard.ledger.digests import Claim, claim, returned_run, run_claim
from guard.ledger.records import CallRecord, RunRecord
from guard.ledger.states import FINISHED_RUN_STATES, CallState, RunState, check_call_move, check_run_move

__all__ = [
    "EVENT_COLUMNS",
    "EventIn",
    "Lead",
    "RunClose",
    "RunMoved",
    "append_events",
    "cas_call",
    "detail_json",
    "heads_in_events",
    "heads_kept",
    "move_run",
    "move_run_if",
    "new_id",
]

# An event's detail as `json.dumps` writes it, without building a new encoder per call (`fast_encoder`).
detail_json = fast_encoder(json.JSONEncoder())
_WINDOW_SCOPE = re.compile(r"^(w\d*)?$")  # the `stop_marks` scopes that are not run ids (guard.ledger.field_stops)
_random = random.Random()  # noqa: S311 (ids unique, not secret) seeded from os.urandom; reseeded after fork
os.register_at_fork(after_in_child=_random.seed)

# (run_id, call_id, at, actor, entity, from_state, to_state, detail JSON)
EventIn = tuple[str | None, str | None, float, str, str, str | None, str, str]
# The columns of an event row as `_chain` lays its values out (the backend's one-statement append names them too).
EVENT_COLUMNS = (
    "run_id",
    "call_id",
    "at",
    "actor",
    "entity",
    "from_state",
    "to_state",
    "detail",
    "hash",
    "stream",
    "seq",
    "row_table",
    "row_key",
    "row_digest",
)
_EVENT_COLS = ", ".join(EVENT_COLUMNS)
_ROW = f"({', '.join('?' * len(EVENT_COLUMNS))})"
# One INSERT statement per batch size (SQLite caches each prepared statement): a multi-row VALUES is
# cheaper than executemany for the 1-4 events a step appends.
_INSERT_EVENTS = {n: f"INSERT INTO events ({_EVENT_COLS}) VALUES {', '.join([_ROW] * n)}" for n in range(1, 9)}
# The stream's head, locked until commit (made at length 0 the first time): ON CONFLICT DO UPDATE locks the row and
# returns it as the last committed writer left it, so a writer on the same stream waits here for the other's commit
# and then chains onto what that one wrote (on PostgreSQL at READ COMMITTED, where no ledger-wide lock serialises
# the writers; on SQLite the one write lock already does).
_LOCK_HEAD = (
    "INSERT INTO stream_heads (stream, length, head) VALUES (?, 0, ?) ON CONFLICT (stream) "
    "DO UPDATE SET length = stream_heads.length RETURNING length, head"
)
# A new stream's head row, made at its first events (nothing when the row exists: its head is read and moved).
_MAKE_HEAD = "INSERT INTO stream_heads (length, head, stream) VALUES (?, ?, ?) ON CONFLICT (stream) DO NOTHING"
# Compare-and-set on the (length, head) read or remembered: two writers on one stream never both extend one head.
_MOVE_HEAD = "UPDATE stream_heads SET length = ?, head = ? WHERE stream = ? AND length = ? AND head = ?"
# A run stream's head on SQLite, found in its events (ix_events_run) instead of a `stream_heads` row: SQLite has one
# writer at a time, so no row lock is needed to order the writers of one stream, and the head row's update cost a
# statement and a dirty page in every commit (about a tenth of a guarded call).
_LAST_OF_RUN = "SELECT seq, hash FROM events WHERE run_id = ? AND stream = ? ORDER BY id DESC LIMIT 1"
_CALL_ENTITIES = frozenset({"call", "external_id", "lease"})
_HEADS: dict[str, tuple[int, str]] = {}  # stream -> (length, head) this process last wrote (see _remember)
_HEADS_KEPT = 50_000


def new_id(prefix: str) -> str:
    """A time-ordered id (UUIDv7 layout): inserts land at the end of the primary-key index."""
    ms = time.time_ns() // 1_000_000
    rand = _random.getrandbits(80)  # uniqueness, not secrecy: ids are not credentials
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{prefix}_{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# A write that events are about, made with them (`append_events(lead=...)`): an INSERT's SQL text (no RETURNING) and
# its parameters; when it writes no row (ON CONFLICT DO NOTHING found the key taken) nothing is appended.
Lead = tuple[str, Sequence[Any]]


def append_events(
    cur: Any,
    events: list[EventIn],
    claims: Sequence[Claim] = (),
    *,
    stream: str | None = None,
    lead: Lead | None = None,
    fresh: bool = False,
) -> bool:
    """Append events to one stream's hash chain inside the caller's write transaction, with the claims of the
    rows this transaction wrote (see `guard.ledger.digests`), and move the stream's head in the same transaction.

    `stream` defaults to the run of the first event. An event about a call (entity `call`, `external_id`,
    `lease`) or a run (`run`) claims that row as it is now, the last such event per row only; `claims` are the
    other rows written (or a call's row computed from the values just inserted, which saves reading it back).
    They ride on events of the batch without a claim, from the last; `row` events carry any left over. Only this
    stream's head row is written (and read, unless this process wrote it last): writers on other streams never wait
    for it on a database with row locks (on SQLite every writer holds the one write lock anyway). A writer on the
    same stream waits for the head row's lock and chains onto the head the other one committed.

    `lead`: the insert of the row the events are about, made first (in the same statement as the head's move and
    the events where the cursor can, `_extend`). Returns False, having written nothing, when it wrote no row;
    True when the events were appended.

    `fresh`: the stream is new (its run was inserted in this transaction): where heads are kept in rows, its head
    row is made with the events instead of read first (the head is read and moved as usual if it exists).
    """
    if len(events) == 1 and len(claims) == 1 and stream is None and heads_in_events(cur):
        ev, held = events[0], claims[0]
        run_id = ev[0]
        if run_id is not None and _target(ev) in (None, held[:2]):
            return _append_one_sqlite(cur, run_id, ev, held, lead)  # the call path's case, without the loops below
    if not events:  # e.g. a move_run_if that did not move: nothing happened, nothing to chain
        if claims or lead:  # pragma: no cover - a programming error: a claim rides on an event of its transaction
            raise GuardUsageError("claims need at least one event to ride on")
        return True
    if stream is None:
        first = events[0][0]
        if first is None:  # pragma: no cover - a programming error: run-less events name their stream
            raise GuardUsageError("an event without a run must name its stream")
        stream = "run:" + first
    if len(events) == 1 and len(claims) == 1 and _target(events[0]) in (None, claims[0][:2]):
        # The call path's case (one event, its row's claim given): what the loops below come to, without them.
        attached: list[Claim | None] = [claims[0]]
    else:
        events, attached = _attach(cur, events, claims)
    if stream.startswith("run:") and heads_in_events(cur):
        return _append_run_sqlite(cur, stream, events, attached, lead)
    # The head this process last wrote (one compare-and-set proves it is still the head), or a new stream's.
    known: tuple[int, str] | None = (0, GENESIS) if fresh else _HEADS.get(stream)
    if known is not None:
        out, seq, head = _chain(stream, known[0], known[1], events, attached)
        wrote, moved = _extend(cur, (seq, head, stream, known[0], known[1]), out, len(events), lead, fresh)
        if not wrote:
            return False
        if moved:
            _remember(stream, seq, head)
            return True
    elif lead is not None and not _lead(cur, lead):
        return False
    # The remembered head was stale (or there was none): lock the head row, then move it from what it holds.
    cur.execute(_LOCK_HEAD, (stream, GENESIS))
    row = cur.fetchone()
    length, prev = int(row[0]), str(row[1])
    out, seq, head = _chain(stream, length, prev, events, attached)
    if not _extend(cur, (seq, head, stream, length, prev), out, len(events))[1]:  # pragma: no cover - locked above
        raise IllegalTransition(
            f"stream {stream} moved on while this transaction held its head",
            entity="stream",
            id=stream,
            from_state=str(length),
            to_state=str(seq),
        )
    _remember(stream, seq, head)
    return True


def _target(ev: EventIn) -> tuple[str, str] | None:
    """The row an event is about, whose claim it carries: a call's (entity `call`, `external_id`, `lease`) or a
    run's (`run`); None for any other event."""
    if ev[4] in _CALL_ENTITIES and ev[1] is not None:
        return ("calls", ev[1])
    if ev[4] == "run" and ev[0] is not None:
        return ("runs", ev[0])
    return None


def _attach(cur: Any, events: list[EventIn], claims: Sequence[Claim]) -> tuple[list[EventIn], list[Claim | None]]:
    """The events (with a `row` event added per claim left over) and the claim each carries: every row an event is
    about claimed as it is now (the last such event per row only) unless `claims` has it; the other claims ride on
    events without one, from the last."""
    given = {(c[0], c[1]) for c in claims}
    attached: list[Claim | None] = [None] * len(events)
    for i in range(len(events) - 1, -1, -1):
        target = _target(events[i])
        if target is not None and target not in given:
            given.add(target)
            attached[i] = claim(cur, *target)
    rest = list(claims)
    for i in range(len(events) - 1, -1, -1):
        if not rest:
            break
        if attached[i] is None:
            attached[i] = rest.pop()
    if rest:
        run_id, _call, at, actor = events[-1][:4]
        events = [*events, *[(run_id, None, at, actor, "row", None, "written", "{}")] * len(rest)]
        attached.extend(rest)
    return events, attached


def _append_run_sqlite(
    cur: sqlite3.Cursor, stream: str, events: list[EventIn], attached: list[Claim | None], lead: Lead | None
) -> bool:
    """`append_events` for a run's stream on SQLite: the head is the stream's last event, read inside this write
    transaction (SQLite's one write lock keeps every other writer out until it commits), and no head row is kept
    (`heads_kept`). Every event of the stream is about its run, so the run's index finds the last one."""
    run_id = stream[4:]
    for ev in events:
        if ev[0] != run_id:  # pragma: no cover - a programming error: a run's stream holds that run's events
            raise GuardUsageError(f"an event of run {ev[0]} cannot go on the stream of run {run_id}")
    if lead is not None and not _lead(cur, lead):
        return False
    row = cur.execute(_LAST_OF_RUN, (run_id, stream)).fetchone()
    out, _seq, _head = _chain(stream, *((int(row[0]), str(row[1])) if row else (0, GENESIS)), events, attached)
    _insert(cur, out, len(events))
    return True


def _append_one_sqlite(cur: sqlite3.Cursor, run_id: str, ev: EventIn, held: Claim, lead: Lead | None) -> bool:
    """`_append_run_sqlite` for one event carrying one claim, on its run's stream: what every offer and completion
    of a call appends, in as few steps as the same rows take (one lead insert, one read of the head, one insert)."""
    if lead is not None and not _lead(cur, lead):
        return False
    _run, call_id, at, actor, entity, src, dst, detail = ev
    stream = "run:" + run_id
    row = cur.execute(_LAST_OF_RUN, (run_id, stream)).fetchone()
    seq, prev = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS)
    table, key, digest = held
    head = event_hash(prev, stream, seq, run_id, call_id, at, actor, entity, src, dst, detail, table, key, digest)
    cur.execute(_INSERT_EVENTS[1], (run_id, call_id, at, actor, entity, src, dst, detail, head, stream, seq, *held))
    return True


def heads_in_events(cur: Any) -> bool:
    """Whether the cursor's database finds a run stream's head in its events (SQLite, one writer at a time): any
    cursor but PostgreSQL's (`guard.ledger.backend_postgres`, which can fold a COMMIT into its next statement), so
    that a proxy around a SQLite cursor (a test's witness) takes SQLite's path."""
    return not hasattr(cur, "commit_with_next")


def heads_kept(stream: str, *, postgres: bool) -> bool:
    """Whether the stream's head is kept as a `stream_heads` row: always on PostgreSQL (its row lock orders the
    writers of one stream), and on SQLite for every stream but a run's (`_append_run_sqlite`)."""
    return postgres or not stream.startswith("run:")


def _extend(
    cur: Any,
    move: tuple[int, str, str, int, str],
    out: list[Any],
    n: int,
    lead: Lead | None = None,
    fresh: bool = False,
) -> tuple[bool, bool]:
    """Make the `lead` insert if any, then, only if it wrote its row, move a stream's head (`move`: new length, new
    head, stream, old length, old head) by compare-and-set and insert the `n` events' rows `out` only if it moved.
    Returns (the lead wrote its row or there was none, the head moved and the events are in). `fresh`: make the
    head row instead (not moved when it exists).

    A cursor that can do it all in one statement (`extend_chain`: PostgreSQL's data-modifying CTE, one round trip
    to the server instead of up to three) does; otherwise one statement each (SQLite, in-process: no trips)."""
    fold = getattr(cur, "extend_chain", None)
    if fold is not None:
        return fold(move, out, n, lead, fresh)  # type: ignore[no-any-return]
    if lead is not None and not _lead(cur, lead):
        return False, False
    cur.execute(*((_MAKE_HEAD, move[:3]) if fresh else (_MOVE_HEAD, move)))
    if cur.rowcount != 1:
        return True, False
    _insert(cur, out, n)
    return True, True


def _lead(cur: Any, lead: Lead) -> bool:
    """The lead insert alone; True when it wrote its row."""
    cur.execute(*lead)
    return bool(cur.rowcount == 1)


def _chain(
    stream: str, length: int, prev: str, events: list[EventIn], attached: list[Claim | None]
) -> tuple[list[Any], int, str]:
    """The events' rows (flattened for one INSERT), the stream's new length and head."""
    out: list[Any] = []
    seq = length
    for (run_id, call_id, at, actor, entity, src, dst, detail), held in zip(events, attached, strict=True):
        table, key, digest = held if held is not None else (None, None, None)
        seq += 1
        prev = event_hash(prev, stream, seq, run_id, call_id, at, actor, entity, src, dst, detail, table, key, digest)
        out.extend((run_id, call_id, at, actor, entity, src, dst, detail, prev, stream, seq, table, key, digest))
    return out, seq, prev


def _insert(cur: Any, out: list[Any], n: int) -> None:
    sql = _INSERT_EVENTS.get(n)
    if sql is None:
        cur.executemany(_INSERT_EVENTS[1], [out[i : i + 14] for i in range(0, len(out), 14)])
    else:
        cur.execute(sql, out)


def _remember(stream: str, length: int, head: str) -> None:
    """Keep the head this transaction wrote, to skip reading it next time. Only a hint: it may be stale (a rolled
    back transaction, another process, another ledger file with the same stream name), which the compare-and-set
    on (length, head) finds, and then the head is read."""
    if len(_HEADS) >= _HEADS_KEPT:
        _HEADS.clear()
    _HEADS[stream] = (length, head)


def cas_call(
    cur: Any,
    call: CallRecord,
    dst: CallState,
    now: float,
    actor: str,
    sets: str = "",
    params: tuple[Any, ...] = (),
    detail: str = "{}",
) -> None:
    src = CallState(call.state)
    check_call_move(call.call_id, src, dst)
    extra = f", {sets}" if sets else ""
    cur.execute(
        f"UPDATE calls SET state = ?, updated_at = ?{extra} WHERE call_id = ? AND state = ?",
        (dst, now, *params, call.call_id, src),
    )
    if cur.rowcount != 1:
        raise IllegalTransition(
            f"call {call.call_id} is no longer {src}", entity="call", id=call.call_id, from_state=src, to_state=dst
        )
    append_events(cur, [(call.run_id, call.call_id, now, actor, "call", src, dst, detail)])


def move_run_if(cur: Any, run_id: str, src: RunState, dst: RunState, now: float, actor: str, why: str) -> list[EventIn]:
    """Move the run `src -> dst` if it is in `src` (compare-and-set); the event to append, if it moved."""
    check_run_move(run_id, src, dst)
    cur.execute("UPDATE runs SET state = ?, updated_at = ? WHERE run_id = ? AND state = ?", (dst, now, run_id, src))
    if cur.rowcount != 1:
        return []
    return [(run_id, None, now, actor, "run", src, dst, detail_json({"why": why}))]


@dataclass(frozen=True, slots=True)
class RunClose:
    """How a run ends or halts: its state and what an operator must know."""

    state: RunState
    status_label: str | None = None
    error_summary: str | None = None
    next_safe_action: str | None = None
    requires_review: bool = False


class RunMoved(NamedTuple):
    """A run moved inside the caller's write transaction: the event to append, the claim of the row as written
    (its `UPDATE ... RETURNING`: no read back), and the run as it now stands."""

    events: list[EventIn]
    claim: Claim
    run: RunRecord


# The run as an UPDATE left it: the claim's columns first, then the record's derived ones.
_RETURNING_RUN = f" RETURNING {RunRecord.sql_columns('runs')}"


def move_run(
    cur: Any,
    run_id: str,
    close: RunClose,
    now: float,
    actor: str,
    *,
    expect: frozenset[RunState] | None = None,
    detail: dict[str, Any] | None = None,
    src: RunState | None = None,
) -> RunMoved:
    """Move the run to `close.state` (checked against the table, and against `expect` when given) inside the
    caller's write transaction. In the same state only its description is updated, and the event (from and to the
    same state) records that. `src`: the run's state as the caller read it in this transaction (else read here);
    the update moves it only from there (compare-and-set)."""
    if src is None:
        cur.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise GuardUsageError(f"no run {run_id} in the ledger", run_id=run_id)
        src = RunState(row[0])
    if expect is not None and src not in expect:
        raise IllegalTransition(
            f"run {run_id} is {src}, expected one of {sorted(expect)}",
            entity="run",
            id=run_id,
            from_state=src,
            to_state=close.state,
        )
    labels = (close.status_label, close.error_summary, close.next_safe_action, close.requires_review, now)
    if src == close.state:
        cur.execute(
            "UPDATE runs SET status_label = ?, error_summary = ?, next_safe_action = ?, requires_review = ?, "
            "updated_at = ? WHERE run_id = ?" + _RETURNING_RUN,
            (*labels, run_id),
        )
        # Not a move: an event all the same, so the rewritten row is claimed (see guard.ledger.digests).
        info = {"status_label": close.status_label, "error_summary": close.error_summary}
        return _moved(cur.fetchone(), run_id, now, actor, src, src, info)
    check_run_move(run_id, src, close.state)
    # An ended run takes no more calls: its per-run stop-rule counts are never read again, so they go in the same
    # transaction (a window's or a duplicates rule's rows have scopes `w<n>` and "", which no pruned run id is).
    # On PostgreSQL the delete rides in the update's statement (a data-modifying WITH): no round trip of its own.
    prune = close.state in FINISHED_RUN_STATES and not _WINDOW_SCOPE.match(run_id)
    folded = prune and not heads_in_events(cur)  # PostgreSQL
    cur.execute(
        ("WITH pruned AS (DELETE FROM stop_marks WHERE scope = ?) " if folded else "")
        + "UPDATE runs SET state = ?, status_label = ?, error_summary = ?, next_safe_action = ?, "
        "requires_review = ?, updated_at = ? WHERE run_id = ? AND state = ?" + _RETURNING_RUN,
        ((run_id,) if folded else ()) + (close.state, *labels, run_id, src),
    )
    row = cur.fetchone()
    if row is None:  # rolled back with the caller's transaction, the delete with it
        raise IllegalTransition(
            f"run {run_id} changed state concurrently", entity="run", id=run_id, from_state=src, to_state=close.state
        )
    if prune and not folded:
        cur.execute("DELETE FROM stop_marks WHERE scope = ?", (run_id,))
    info = {"status_label": close.status_label, "error_summary": close.error_summary, **(detail or {})}
    return _moved(row, run_id, now, actor, src, close.state, info)


def _moved(
    row: tuple[Any, ...] | None, run_id: str, now: float, actor: str, src: RunState, dst: RunState, info: dict[str, Any]
) -> RunMoved:
    if row is None:  # pragma: no cover - the run's row was read or locked in this transaction
        raise GuardUsageError(f"no run {run_id} in the ledger", run_id=run_id)
    event: EventIn = (run_id, None, now, actor, "run", src, dst, detail_json(info))
    run = returned_run(row)
    return RunMoved([event], run_claim(run), RunRecord.from_row(run))
