# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""The floor of a write-ahead ledger: two raw SQLite commits per call (insert a row, then update it).

Same connection settings Guard uses: journal_mode=WAL, synchronous=FULL, busy_timeout=5000, and explicit
BEGIN IMMEDIATE ... COMMIT transactions through the stdlib sqlite3 module (no ORM).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000")


def connect(db_path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    for p in PRAGMAS:
        conn.execute(p)
    return conn


def settings(conn: sqlite3.Connection) -> str:
    jm = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[conn.execute("PRAGMA synchronous").fetchone()[0]]
    bt = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    return f"journal_mode={jm}, synchronous={sync}, busy_timeout={bt}"


def make_two_commits(db_path: str) -> tuple[Callable[[], None], Callable[[], None], str]:
    """(call, closer, settings): each call() inserts a row and commits, then updates it and commits."""
    conn = connect(db_path)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS floor_calls(id INTEGER PRIMARY KEY, state TEXT NOT NULL, "
        "args_json TEXT NOT NULL, result_json TEXT, at REAL)"
    )
    counter = itertools.count(1)
    ex = conn.execute

    def call() -> None:
        i = next(counter)
        ex("BEGIN IMMEDIATE")
        ex("INSERT INTO floor_calls(id, state, args_json, at) VALUES (?, 'running', '{}', 0.0)", (i,))
        ex("COMMIT")
        ex("BEGIN IMMEDIATE")
        ex("UPDATE floor_calls SET state='succeeded', result_json='null' WHERE id=?", (i,))
        ex("COMMIT")

    return call, conn.close, settings(conn)
