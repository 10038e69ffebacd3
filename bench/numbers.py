# pyright: basic
"""Figures for issue 14's index of the three numbers' window (migration 0012_incident_numbers): `guard report
--since 7d` on a SQLite ledger of N calls spread over weeks, with the window's indexes and without them. Not a
test: `python -m bench.numbers [--calls N] [--days D] [--dir DIR]`.

The ledger is filled by `bench.seed` (completed calls, 10 a run), spaced so that the history spans `--days` days
ending a minute ago; a week is then about 7/D of it. Each figure is the best of three runs of the real command
(`guard report --since 7d --json`, a subprocess); "before" is the same file with the three indexes dropped (the
schema of 0010), "after" with them. `--since 3650d` (every call) is timed too, to show a full window is not made
slower by the index.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.seed import seed_calls
from guard.ledger import Ledger

_INDEXES = {
    "ix_calls_offered_at": "CREATE INDEX ix_calls_offered_at ON calls (offered_at)",
    "ix_events_failures": "CREATE INDEX ix_events_failures ON events (at) "
    "WHERE entity = 'call' AND to_state IN ('failed', 'in_doubt')",
    "ix_approvals_decided": "CREATE INDEX ix_approvals_decided ON approvals (decided_at)",
}


def _report(url: str, since: str) -> tuple[float, int]:
    best, calls = float("inf"), 0
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "guard", "report", "--since", since, "--db", url, "--json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        best = min(best, time.perf_counter() - t0)
        calls = sum(t["calls"] for t in json.loads(out)["tools"])
    return best, calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=60.0)
    parser.add_argument("--dir", default=None)
    a = parser.parse_args()
    where = Path(a.dir or tempfile.mkdtemp(prefix="guard-bench-numbers-"))
    db = where / "guard.db"
    url = f"sqlite:///{db}"
    if not db.exists():
        Ledger(url).close()  # migrates, the window's indexes included
        t0 = time.perf_counter()
        conn = sqlite3.connect(db)
        seed_calls(conn, a.calls, step=a.days * 86400 / a.calls, end=time.time() - 60)
        conn.close()
        print(f"seeded {a.calls:,} calls over {a.days:g} days in {time.perf_counter() - t0:.0f} s")
    conn = sqlite3.connect(db)
    total = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    print(f"ledger: {total:,} calls, {db.stat().st_size / 2**20:,.0f} MiB at {db}")
    rows: dict[str, dict[str, tuple[float, int]]] = {}
    for label in ("after", "before"):
        if label == "before":
            for name in _INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
            conn.commit()
        rows[label] = {since: _report(url, since) for since in ("7d", "3650d")}
    for sql in _INDEXES.values():  # leave the file as the migrations made it
        conn.execute(sql.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS"))
    conn.commit()
    conn.close()
    for since in ("7d", "3650d"):
        b, af = rows["before"][since], rows["after"][since]
        print(
            f"guard report --since {since:<6} ({af[1]:>9,} calls in window): "
            f"before {b[0]:6.2f} s, after {af[0]:6.2f} s (best of 3, process start included)"
        )


if __name__ == "__main__":
    main()
