# pyright: basic
"""Figures for issue 14: the blast radius and the snapshot of an incident of ~10,000 touched records on a ledger of
1,000,000 calls (SQLite file). Not a test: `python -m bench.incidents [--calls N] [--runs-in-scope R]`.

The ledger is filled by `bench.seed` (completed calls, 10 a run, a quarter of them reads); the incident's runs
get a source event (`bad-sync`) and an external id on each call, as a sync's would. Prints seconds and the peak of
Python memory (tracemalloc) for each step, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.seed import seed_calls
from guard.incidents import IncidentBook, Scope
from guard.ledger import Ledger

T = TypeVar("T")


def _timed(what: str, fn: Callable[[], T], runs: int = 1) -> T:
    t0 = time.perf_counter()
    out = fn()
    best = time.perf_counter() - t0
    for _ in range(runs - 1):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{what:<12} {best:8.2f} s   peak Python memory {peak / 2**20:7.1f} MiB")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--runs-in-scope", type=int, default=1334)  # x 10 calls x 3/4 non-read = ~10,000
    parser.add_argument("--dir", default=None)
    a = parser.parse_args()
    where = Path(a.dir or tempfile.mkdtemp(prefix="guard-bench-incidents-"))
    db = where / "guard.db"
    url = f"sqlite:///{db}"
    Ledger(url).close()  # migrates
    t0 = time.perf_counter()
    conn = sqlite3.connect(db)
    seed_calls(conn, a.calls)
    runs = [r for (r,) in conn.execute("SELECT run_id FROM runs ORDER BY run_id LIMIT ?", (a.runs_in_scope,))]
    conn.execute("BEGIN")
    conn.executemany("UPDATE runs SET source_event_id = 'bad-sync' WHERE run_id = ?", [(r,) for r in runs])
    for r in runs:
        for call_id, seq in conn.execute("SELECT call_id, seq FROM calls WHERE run_id = ?", (r,)).fetchall():
            conn.execute(
                "UPDATE calls SET external_ids = ? WHERE call_id = ?",
                (json.dumps({"contact": f"ct_{r[-6:]}_{seq}"}), call_id),
            )
    conn.execute("COMMIT")
    calls = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    conn.close()
    print(f"ledger: {calls:,} calls, {db.stat().st_size / 2**20:,.0f} MiB, seeded in {time.perf_counter() - t0:.0f} s")
    ledger = Ledger(url)
    book = IncidentBook(ledger)
    inc = _timed("open", lambda: book.open(Scope(source_event_ids=("bad-sync",)), title="bench", opened_by="bench"))
    radius = _timed("radius", lambda: book.radius(inc.incident_id), runs=3)
    print(f"             {radius.summary()}")
    _timed("csv", lambda: radius.to_csv())
    window = Scope(team="billing", tools=("billing.*",), since=0.0)
    _timed("window", lambda: book.radius(book.open(window, title="w", opened_by="bench").incident_id))
    snap = where / "snapshot.jsonl"
    t0 = time.perf_counter()
    taken = book.snapshot(inc.incident_id, snap, by="bench")
    seconds = time.perf_counter() - t0
    again = book.open(Scope(source_event_ids=("bad-sync",)), title="bench 2", opened_by="bench")
    tracemalloc.start()
    book.snapshot(again.incident_id, where / "snapshot-2.jsonl", by="bench")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"{'snapshot':<12} {seconds:8.2f} s   peak Python memory {peak / 2**20:7.1f} MiB   "
        f"({taken.records:,} records, {snap.stat().st_size / 2**20:.1f} MiB file)"
    )
    t0 = time.perf_counter()
    ok = book.verify(inc.incident_id).ok
    print(f"{'verify':<12} {time.perf_counter() - t0:8.2f} s   ok={ok}")
    print(f"peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    ledger.close()


if __name__ == "__main__":
    main()
