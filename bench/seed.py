# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""Fill a ledger with N earlier calls fast: raw sqlite3 executemany in big transactions (no guarded calls).

The runner opens Guard on the file first, so Guard's migrations create the schema; this module only
inserts rows shaped like the ones Guard's ledger writes for an auto-approved call that completed:
one `calls` row (state completed), its 2 chained events (offered -> approved -> started in one, completed), and
one `runs` row (completed, with its 2 events) per CALLS_PER_RUN calls; each run is its own stream (its events
chained from the stream's start; its head in `stream_heads` only for PostgreSQL, as SQLite keeps no head row for a
run's stream), and the last event of each row carries that row's claim (its digest), as Guard's own writes do.

Column lists come from the ledger's record types, the hash chain from its own `event_hash`, the claims from
its own `row_digest`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import time

from guard.ledger.chain import GENESIS, event_hash, run_stream
from guard.ledger.digests import row_digest
from guard.ledger.records import CallRecord, EventRecord, RunRecord

CALLS_PER_RUN = 10
BATCH_CALLS = 50_000  # calls per transaction (with their events and runs)
TEAMS = ("bench", "billing", "support", "ops")
TOOLS = (
    ("crm.lookup", "read"),
    ("billing.create_invoice", "compensable"),
    ("crm.upsert_lead", "idempotent"),
    ("mail.send", "irreversible"),
)
FIRST_PATH = ("offered", "approved", "started")  # the first commit's one event names this path
CALL_EVENTS = ((None, "started"), ("started", "completed"))
ACTOR = "agent:seed"

# Column lists come from the ledger's own records, so the seed cannot drift from the schema.
_CALL_COLS = CallRecord.columns()
_RUN_COLS = RunRecord.stored_columns()
_EVENT_COLS = EventRecord.columns()[1:]  # id is assigned by the database


def _v7(prefix: str, ms: int, rng: random.Random) -> str:
    """Same layout as guard.ledger.moves.new_id, but at a chosen (past) millisecond."""
    rand = rng.getrandbits(80)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{prefix}_{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _row(columns: tuple[str, ...], **values: object) -> tuple[object, ...]:
    """A row in the table's column order; a missing or extra column is a KeyError/ValueError at once."""
    if set(values) != set(columns):
        raise ValueError(f"seed row does not match the schema: {sorted(set(values) ^ set(columns))}")
    return tuple(values[c] for c in columns)


def count_calls(conn: sqlite3.Connection, tool: str | None = None) -> int | None:
    try:
        if tool is None:
            return conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        return conn.execute("SELECT count(*) FROM calls WHERE tool = ?", (tool,)).fetchone()[0]
    except sqlite3.Error:
        return None


# ===================================================================================================
# SEED FUNCTION — keep in step with Guard's schema (tables, columns, states, events, hash chain).
# ===================================================================================================
def seed_calls(
    conn: sqlite3.Connection,
    n: int,
    *,
    start: int = 0,
    seed: int = 7,
    step: float = 0.01,
    end: float | None = None,
    for_postgres: bool = False,
) -> None:
    """Insert `n` completed earlier calls into the ledger open on `conn` (Guard's schema must exist).

    `start` numbers the synthetic calls, so that seeding twice into one file (100k, then 900k more)
    never collides. Calls are dated in the past, one per 10 ms ending an hour ago, so their time-ordered
    ids sort before any live call's. Events continue the ledger's hash chain from its last event.
    Durability is off while seeding (setup, not measurement); afterwards the caller's synchronous
    setting is restored and the WAL is checkpointed. `step` spaces the calls (seconds) and `end`, when given, is
    when the last of the `start + n` calls is offered: a history of weeks for a window to select from.

    `for_postgres`: the rows are to be copied into a PostgreSQL ledger (`bench.verify_postgres`), whose boolean
    column reads back as `false`, not SQLite's `0`: the runs' claims are computed as PostgreSQL will read them.
    """
    if n <= 0:
        return
    rng = random.Random(seed * 1_000_003 + start)
    old_sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    old_iso = conn.isolation_level
    conn.isolation_level = None
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while seeding
    # by default the whole 1M history ends ~1h ago
    t0 = time.time() - 3600.0 - 1_000_000 * step * 1.2 if end is None else end - (start + n) * step

    done = 0
    while done < n:
        k = min(BATCH_CALLS, n - done)
        runs, calls, events, heads = [], [], [], []
        run_id = team = stream = ""
        prev, length = GENESIS, 0
        for j in range(start + done, start + done + k):
            run_no, seq0 = divmod(j, CALLS_PER_RUN)
            at = t0 + j * step
            if seq0 == 0 or not run_id:
                if stream:
                    heads.append((stream, length, prev))
                team = TEAMS[run_no % len(TEAMS)]
                run_id = _v7("run", int((t0 + run_no * CALLS_PER_RUN * step) * 1000), rng)
                run_end = at + CALLS_PER_RUN * step
                stream, prev, length = run_stream(run_id), GENESIS, 0
                run_row = _row(
                    _RUN_COLS,
                    run_id=run_id,
                    team=team,
                    source_event_id=None,
                    subject=None,
                    state="completed",
                    status_label=None,
                    next_safe_action=None,
                    requires_review=False if for_postgres else 0,
                    error_summary=None,
                    created_by=ACTOR,
                    created_at=at,
                    updated_at=run_end,
                )
                runs.append(run_row)
                for src, dst, ev_at in ((None, "running", at), ("running", "completed", run_end)):
                    detail = (
                        json.dumps({"team": team, "subject": None, "source_event_id": None})
                        if dst == "running"
                        else "{}"
                    )
                    claim = ("runs", run_id, row_digest("runs", run_row)) if dst == "completed" else (None,) * 3
                    length += 1
                    h = event_hash(prev, stream, length, run_id, None, ev_at, ACTOR, "run", src, dst, detail, *claim)
                    events.append((run_id, None, ev_at, ACTOR, "run", src, dst, detail, h, stream, length, *claim))
                    prev = h
            seq = seq0 + 1
            tool, side_effect = TOOLS[j % len(TOOLS)]
            call_id = _v7("call", int(at * 1000), rng)
            args_json = json.dumps(
                {"amount_cents": j % 90_000, "customer": f"c-{j % 5000:05d}"}, separators=(",", ":"), sort_keys=True
            )
            args_hash = "sha256:" + hashlib.sha256(args_json.encode()).hexdigest()
            key = (
                None
                if side_effect == "read"
                else "auto:" + hashlib.sha256(f"{run_id}\x1f{tool}\x1f{args_hash}".encode()).hexdigest()[:32]
            )
            call_row = _row(
                _CALL_COLS,
                call_id=call_id,
                run_id=run_id,
                seq=seq,
                team=team,
                tool=tool,
                side_effect=side_effect,
                rule="seed",
                policy_version="sha256:seed",
                args_json=args_json,
                args_hash=args_hash,
                idempotency_key=key,
                requested_key=None,
                state="completed",
                attempts=1,
                external_ids="{}",
                result_json='{"ok":true}',
                error=None,
                reason=None,
                compensates_call_id=None,
                requested_by=ACTOR,
                offered_at=at,
                approved_at=at,
                started_at=at,
                ended_at=at + 0.002,
                updated_at=at + 0.002,
                lease_owner="seed",
                lease_token=1,
                lease_expires_at=None,
            )
            calls.append(call_row)
            for src, dst in CALL_EVENTS:
                ev_at = at if dst != "completed" else at + 0.002
                detail = (
                    json.dumps({"path": list(FIRST_PATH), "args_hash": args_hash, "policy_version": "sha256:seed"})
                    if src is None
                    else "{}"
                )
                claim = ("calls", call_id, row_digest("calls", call_row)) if dst == "completed" else (None,) * 3
                length += 1
                h = event_hash(prev, stream, length, run_id, call_id, ev_at, ACTOR, "call", src, dst, detail, *claim)
                events.append((run_id, call_id, ev_at, ACTOR, "call", src, dst, detail, h, stream, length, *claim))
                prev = h
        if stream:
            heads.append((stream, length, prev))
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table, cols, rows in (
                ("runs", _RUN_COLS, runs),
                ("calls", _CALL_COLS, calls),
                ("events", _EVENT_COLS, events),
                ("stream_heads", ("stream", "length", "head"), heads if for_postgres else []),
            ):
                conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        done += k
    conn.execute(f"PRAGMA synchronous={old_sync}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.isolation_level = old_iso


# ===================================================================================================


if __name__ == "__main__":  # python -m bench.seed DB_PATH N : seed a Guard ledger file by hand
    import sys

    from bench.floor import connect

    path, count = sys.argv[1], int(sys.argv[2])
    from guard.ledger.database import ensure_ready

    ensure_ready(f"sqlite:///{os.path.abspath(path)}")
    c = connect(path)
    t = time.perf_counter()
    seed_calls(c, count, start=count_calls(c) or 0)
    print(f"seeded {count:,} calls in {time.perf_counter() - t:.1f} s; calls table holds {count_calls(c):,}")
