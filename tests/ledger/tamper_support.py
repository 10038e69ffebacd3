"""A sealed ledger with every covered kind of row, and the tamperings an outsider with the file would try.

Each tampering is a function `(conn, rng, sealed) -> Target | None` on a raw sqlite3 connection to a copy of the
ledger: it changes the file the way someone who can write it (but cannot read the seal key) would, and says what
it touched (the stream, the row) and whether that was covered by the last seal.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger_support import AGENT, TEAM, request

from guard.canonical import args_hash
from guard.ledger import EditGate, Ledger, RunClose, RunState
from guard.ledger.chain import event_hash
from guard.ledger.digests import COVERED, KEY_SEP, row_key
from guard.ledger.notices import NoticeEvent
from guard.ledger.seals import Signer

__all__ = ["KINDS", "Target", "build_ledger"]


@dataclass(frozen=True, slots=True)
class Target:
    """What a tampering touched: the stream (None for a row Guard never wrote), the row, and whether the last
    seal covered it."""

    stream: str | None
    sealed: bool
    table: str | None = None
    key: str | None = None


# The policy's verdict on the edits below: still an approval, for the same role and a quorum of two.
_GATE = EditGate(verdict="approve", reason="test edit", rule="r", roles=("finance",), quorum=2)


def _activity(led: Ledger, tag: str, runs: int) -> None:
    """Runs with completed, denied, approved, rejected and edited calls, tokens, pauses, manual actions,
    notifications and page sessions: every covered table gets rows."""
    for r in range(runs):
        run = f"{tag}-run{r}"
        led.open_run(run, TEAM, actor=AGENT)
        done = led.offer(request(run, key=f"{run}-k1", args={"n": r, "to": "a@example.com"}))
        led.complete(
            run,
            done.call_id,
            token=done.lease_token,
            result_json='{"ok":true}',
            external_ids={"crm": f"c-{r}"},
            attempts=1,
            actor=AGENT,
        )
        led.offer(request(run, verdict="deny", args={"n": -r}))
        waiting = led.offer(request(run, verdict="approve", key=f"{run}-k2", quorum=2, args={"amount": 100 + r}))
        assert waiting.approval_id is not None
        led.decide(
            waiting.approval_id,
            reviewer="alice",
            decision="approve",
            reviewer_roles=frozenset({"finance"}),
            edited_args={"amount": 90 + r},
            edit_gate=_GATE,
        )
        led.decide(waiting.approval_id, reviewer="bob", decision="approve", reviewer_roles=frozenset({"finance"}))
        refused = led.offer(request(run, verdict="approve", key=f"{run}-k3", args={"amount": 9_000}))
        assert refused.approval_id is not None
        led.decide(
            refused.approval_id,
            reviewer="carol",
            decision="reject",
            reviewer_roles=frozenset({"finance"}),
            reason="too much",
        )
        led.record_manual_action(run, operator="ops", action="note", note=f"checked {run}")
        led.move_run(run, RunClose(RunState.COMPLETED), actor=AGENT)
        notice = NoticeEvent(
            event_id=10_000 * (r + 1) + len(tag),
            kind="run_halted",
            team=TEAM,
            run_id=run,
            call_id=None,
            to_state="halted",
        )
        notice_id = led.claim_notice(notice, target="https://hooks.example", approval_id=None)
        assert notice_id is not None
        led.settle_notice(notice_id, state="sent", attempts=1, error=None)
    token, _secret = led.create_token(f"{tag}-reviewer", by="admin")
    led.create_token(f"{tag}-reviewer", by="admin", label="second")
    led.revoke_token(token.token_id, by="admin")
    led.pause("team", TEAM, reason=f"{tag} drill", by="op")
    led.unpause("team", TEAM, by="op", reason=f"{tag} drill over")
    led.pause("tool", "mail.*", reason=f"{tag} mail drill", by="op", team=TEAM)
    led.end_session(f"{tag}-nonce", until=time.time() + 3600)


def build_ledger(path: Path, key: Path, sink: Path) -> None:
    """Activity, a seal, then more activity that no seal covers yet (some of it in streams sealed before)."""
    led = Ledger(f"sqlite:///{path}")
    try:
        _activity(led, "before", 6)
        led.seal(Signer.load(key_file=str(key)), sink=sink)
        _activity(led, "after", 2)
        led.open_run("before-run0", TEAM, actor=AGENT)  # a resume: nothing new
        led.record_manual_action("before-run1", operator="ops", action="note", note="looked again after the seal")
    finally:
        led.close()


# -- helpers on the raw file ------------------------------------------------------------------------------


def _sealed_len(sealed: dict[str, tuple[int, str]], stream: str) -> int:
    return sealed.get(stream, (0, ""))[0]


def _claim_of(conn: sqlite3.Connection, table: str, key: str) -> tuple[str, int]:
    row = conn.execute(
        "SELECT stream, seq FROM events WHERE row_table = ? AND row_key = ? ORDER BY id DESC LIMIT 1", (table, key)
    ).fetchone()
    return str(row[0]), int(row[1])


def _random_row(conn: sqlite3.Connection, rng: random.Random, table: str | None = None) -> tuple[str, tuple[Any, ...]]:
    tables = [t for t in COVERED if conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]]
    table = table or rng.choice(tables)
    spec = COVERED[table]
    rows = conn.execute(f"SELECT {', '.join(spec.columns)} FROM {table}").fetchall()
    return table, rng.choice(rows)


def _row_target(
    conn: sqlite3.Connection, sealed: dict[str, tuple[int, str]], table: str, values: tuple[Any, ...]
) -> Target:
    key = row_key(table, values)
    stream, seq = _claim_of(conn, table, key)
    return Target(stream, seq <= _sealed_len(sealed, stream), table, key)


def _where(table: str, values: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    spec = COVERED[table]
    return " AND ".join(f"{k} = ?" for k in spec.key), tuple(values[spec.columns.index(k)] for k in spec.key)


def _changed(value: Any, rng: random.Random) -> Any:
    if value is None:
        return "forged"
    if isinstance(value, bool | int):
        return int(value) + rng.randint(1, 5)
    if isinstance(value, float):
        return value + rng.choice((0.001, 1.0, -60.0))
    return str(value) + rng.choice(("x", " ", "0"))


def _rechain(conn: sqlite3.Connection, stream: str) -> None:
    """Recompute every hash of `stream` from its first event and set its head: the work of someone who knows the
    chain's recipe (it needs no key)."""
    prev, seq = "0" * 64, 0
    rows = conn.execute(
        "SELECT id, run_id, call_id, at, actor, entity, from_state, to_state, detail, row_table, "
        "row_key, row_digest FROM events WHERE stream = ? ORDER BY id",
        (stream,),
    ).fetchall()
    for id_, *fields in rows:
        seq += 1
        prev = event_hash(prev, stream, seq, *fields)
        conn.execute("UPDATE events SET seq = ?, hash = ? WHERE id = ?", (seq, prev, id_))
    conn.execute("UPDATE stream_heads SET length = ?, head = ? WHERE stream = ?", (seq, prev, stream))


def _random_event(conn: sqlite3.Connection, rng: random.Random) -> tuple[int, str, int]:
    rows = conn.execute("SELECT id, stream, seq FROM events").fetchall()
    id_, stream, seq = rng.choice(rows)
    return int(id_), str(stream), int(seq)


# -- the tamperings -----------------------------------------------------------------------------------------

Tamper = Callable[[sqlite3.Connection, random.Random, dict[str, tuple[int, str]]], Target | None]


def edit_field(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    table, values = _random_row(conn, rng)
    spec = COVERED[table]
    column = rng.choice([c for c in spec.columns if c not in spec.key])
    where, params = _where(table, values)
    value = values[spec.columns.index(column)]
    conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (_changed(value, rng), *params))
    return _row_target(conn, sealed, table, values)


def delete_row(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    table, values = _random_row(conn, rng)
    target = _row_target(conn, sealed, table, values)
    where, params = _where(table, values)
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute(f"DELETE FROM {table} WHERE {where}", params)
    return target


def insert_row(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    table, values = _random_row(conn, rng)
    spec = COVERED[table]
    row = list(values)
    for k in spec.key:
        i = spec.columns.index(k)
        row[i] = rng.randint(10**6, 10**7) if spec.int_key else f"{row[i]}-forged{rng.randint(0, 10**6)}"
    for unique in ("token_hash", "event_id", "idempotency_key"):
        if unique in spec.columns and row[spec.columns.index(unique)] is not None:
            row[spec.columns.index(unique)] = f"forged-{rng.randint(0, 10**9)}"
    if table == "calls":
        row[spec.columns.index("seq")] = rng.randint(1000, 10**6)
    if table == "approvals":
        row[spec.columns.index("call_id")] = f"forged-{rng.randint(0, 10**9)}"
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute(f"INSERT INTO {table} ({', '.join(spec.columns)}) VALUES ({', '.join('?' * len(row))})", row)
    return Target(None, True, table, row_key(table, tuple(row)))


def swap_rows(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    table, a = _random_row(conn, rng)
    _t, b = _random_row(conn, rng, table)
    spec = COVERED[table]
    columns = [
        c
        for c in spec.columns
        if c not in spec.key
        and a[spec.columns.index(c)] != b[spec.columns.index(c)]
        and c not in ("token_hash", "event_id")
    ]
    if not columns:
        return None
    column = rng.choice(columns)
    i = spec.columns.index(column)
    for values, other in ((a, b), (b, a)):
        where, params = _where(table, values)
        conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (other[i], *params))
    return _row_target(conn, sealed, table, a)


def edit_event(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    id_, stream, seq = _random_event(conn, rng)
    column = rng.choice(("actor", "detail", "to_state", "at", "from_state", "row_digest", "call_id"))
    (value,) = conn.execute(f"SELECT {column} FROM events WHERE id = ?", (id_,)).fetchone()
    conn.execute(f"UPDATE events SET {column} = ? WHERE id = ?", (_changed(value, rng), id_))
    return Target(stream, seq <= _sealed_len(sealed, stream))


def delete_event(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    id_, stream, seq = _random_event(conn, rng)
    conn.execute("DELETE FROM events WHERE id = ?", (id_,))
    return Target(stream, seq <= _sealed_len(sealed, stream))


def insert_event(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    id_, stream, seq = _random_event(conn, rng)
    conn.execute(
        "INSERT INTO events (run_id, call_id, at, actor, entity, from_state, to_state, detail, hash, stream, "
        "seq, row_table, row_key, row_digest) SELECT run_id, call_id, at + 0.0001, 'mallory', entity, "
        "from_state, to_state, detail, hash, stream, seq, NULL, NULL, NULL FROM events WHERE id = ?",
        (id_,),
    )
    return Target(stream, seq <= _sealed_len(sealed, stream))


def swap_events(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    id_, stream, seq = _random_event(conn, rng)
    other = conn.execute(
        "SELECT id, seq FROM events WHERE stream = ? AND id != ? ORDER BY random() LIMIT 1", (stream, id_)
    ).fetchone()
    if other is None:
        return None
    cols = "run_id, call_id, at, actor, entity, from_state, to_state, detail, row_table, row_key, row_digest"
    a = conn.execute(f"SELECT {cols} FROM events WHERE id = ?", (id_,)).fetchone()
    b = conn.execute(f"SELECT {cols} FROM events WHERE id = ?", (other[0],)).fetchone()
    if a == b:
        return None
    sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
    conn.execute(f"UPDATE events SET {sets} WHERE id = ?", (*b, id_))
    conn.execute(f"UPDATE events SET {sets} WHERE id = ?", (*a, other[0]))
    return Target(stream, min(seq, int(other[1])) <= _sealed_len(sealed, stream))


def truncate_tail(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    """Cut the last events of a stream, and move its head back so the ledger agrees with itself."""
    _id, stream, _seq = _random_event(conn, rng)
    (length,) = conn.execute("SELECT max(seq) FROM events WHERE stream = ?", (stream,)).fetchone()
    cut = rng.randint(1, length)
    conn.execute("DELETE FROM events WHERE stream = ? AND seq > ?", (stream, length - cut))
    if length - cut:
        (head,) = conn.execute(
            "SELECT hash FROM events WHERE stream = ? AND seq = ?", (stream, length - cut)
        ).fetchone()
        conn.execute("UPDATE stream_heads SET length = ?, head = ? WHERE stream = ?", (length - cut, head, stream))
    else:
        conn.execute("DELETE FROM stream_heads WHERE stream = ?", (stream,))
    return Target(stream, length - cut < _sealed_len(sealed, stream))


def drop_stream(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    """Remove a whole stream: its events, its head, and the rows it recorded."""
    _id, stream, _seq = _random_event(conn, rng)
    conn.execute("PRAGMA foreign_keys=OFF")
    for table, key in conn.execute(
        "SELECT DISTINCT row_table, row_key FROM events WHERE stream = ? AND row_table IS NOT NULL", (stream,)
    ).fetchall():
        spec = COVERED[table]
        values = key.split(KEY_SEP)
        conn.execute(f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = ?' for k in spec.key)}", values)
    conn.execute("DELETE FROM events WHERE stream = ?", (stream,))
    conn.execute("DELETE FROM stream_heads WHERE stream = ?", (stream,))
    return Target(stream, _sealed_len(sealed, stream) > 0)


def append_forged(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    """Append a well-chained event to a stream and move its head: what a forger who knows the recipe writes."""
    _id, stream, _seq = _random_event(conn, rng)
    conn.execute(
        "INSERT INTO events (run_id, call_id, at, actor, entity, from_state, to_state, detail, hash, stream, "
        "seq) SELECT run_id, NULL, at + 1, 'mallory', 'run', to_state, 'completed', '{}', '', stream, 0 "
        "FROM events WHERE stream = ? ORDER BY id DESC LIMIT 1",
        (stream,),
    )
    _rechain(conn, stream)
    return Target(stream, False)


def rehash_history(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
    """Rewrite one event's detail and re-hash the whole stream after it, head included."""
    id_, stream, seq = _random_event(conn, rng)
    conn.execute("UPDATE events SET detail = ? WHERE id = ?", (json.dumps({"rewritten": rng.random()}), id_))
    _rechain(conn, stream)
    return Target(stream, seq <= _sealed_len(sealed, stream))


def edit_row_and_claim(
    conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]
) -> Target | None:
    """Edit a row, write its new digest into its newest claim, and re-hash the stream: a consistent forgery."""
    from guard.ledger.digests import row_digest

    table, values = _random_row(conn, rng)
    spec = COVERED[table]
    target = _row_target(conn, sealed, table, values)
    column = rng.choice([c for c in spec.columns if c not in spec.key])
    row = list(values)
    row[spec.columns.index(column)] = _changed(row[spec.columns.index(column)], rng)
    where, params = _where(table, values)
    conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (row[spec.columns.index(column)], *params))
    conn.execute(
        "UPDATE events SET row_digest = ? WHERE id = (SELECT max(id) FROM events WHERE row_table = ? AND row_key = ?)",
        (row_digest(table, row), table, target.key),
    )
    assert target.stream is not None
    _rechain(conn, target.stream)
    return target


def _edit_named(
    table: str, sets: str, params: Callable[[tuple[Any, ...]], tuple[Any, ...]], where_extra: str = ""
) -> Tamper:
    def tamper(conn: sqlite3.Connection, rng: random.Random, sealed: dict[str, tuple[int, str]]) -> Target | None:
        spec = COVERED[table]
        rows = conn.execute(f"SELECT {', '.join(spec.columns)} FROM {table} {where_extra}").fetchall()
        if not rows:
            return None
        values = rng.choice(rows)
        where, keys = _where(table, values)
        conn.execute(f"UPDATE {table} SET {sets} WHERE {where}", (*params(values), *keys))
        return _row_target(conn, sealed, table, values)

    return tamper


unrevoke_token = _edit_named(
    "reviewer_tokens", "revoked_at = NULL, revoked_by = NULL", lambda _v: (), "WHERE revoked_at IS NOT NULL"
)
change_reviewer = _edit_named("approval_decisions", "reviewer = ?", lambda v: ("mallory-" + str(v[2]),))


def _forged_args(values: tuple[Any, ...]) -> tuple[Any, ...]:
    args = {"amount": 1_000_000, "to": "mallory@example.com", "was": str(values[0])[-6:]}
    return json.dumps(args), args_hash(args)


change_args = _edit_named("calls", "args_json = ?, args_hash = ?", _forged_args)

KINDS: dict[str, Tamper] = {
    "edit_field": edit_field,
    "delete_row": delete_row,
    "insert_row": insert_row,
    "swap_rows": swap_rows,
    "edit_event": edit_event,
    "delete_event": delete_event,
    "insert_event": insert_event,
    "swap_events": swap_events,
    "truncate_tail": truncate_tail,
    "drop_stream": drop_stream,
    "append_forged": append_forged,
    "rehash_history": rehash_history,
    "edit_row_and_claim": edit_row_and_claim,
    "unrevoke_token": unrevoke_token,
    "change_reviewer": change_reviewer,
    "change_args": change_args,
}
