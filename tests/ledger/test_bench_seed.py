"""The benchmark's bulk seed writes rows the ledger accepts: same columns, chains and claims that verify."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.seed import count_calls, seed_calls
from guard.ledger import Ledger


def test_the_bench_seed_matches_the_schema_and_its_streams_and_rows_verify(ledger: Ledger, db_path: Path) -> None:
    ledger.open_run("live", "bench", actor="agent")  # a chain head before the seed
    conn = sqlite3.connect(db_path)
    try:
        seed_calls(conn, 25)
        assert count_calls(conn) == 25
    finally:
        conn.close()
    report = ledger.verify_chain()
    assert report.ok, report.findings
    assert report.checked == 1 + 25 * 2 + 3 * 2 and report.rows == 1 + 25 + 3  # two events a call, two a run
