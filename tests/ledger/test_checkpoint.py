"""SQLite connection settings on the hot path: the write-ahead log is checkpointed by a thread of one writing
process per file, never inline by the commit that crosses SQLite's default threshold; the log stays bounded; the
thread stops when the ledger closes; reads keep SQLite's busy handler though writes leave it off."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ledger_support import AGENT, TEAM, request

from guard.ledger import Ledger
from guard.ledger.backend import SqliteBackend
from guard.ledger.checkpoint import BACKSTOP_PAGES, RESTART_PAGES
from guard.testing import poll

PAGE = 4096
FRAME = PAGE + 24  # a WAL frame: a page and its header


def _calls(ledger: Ledger, run_id: str, n: int) -> None:
    for i in range(n):
        done = ledger.offer(request(run_id, args={"i": i, "pad": "x" * 2000}))
        ledger.complete(
            run_id,
            done.call_id,
            token=done.lease_token,
            result_json='"' + "y" * 2000 + '"',
            external_ids={},
            attempts=1,
            actor=AGENT,
        )


def _frames(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + "-wal")
    return max(0, (wal.stat().st_size - 32) // FRAME) if wal.exists() else 0


def _backend(ledger: Ledger) -> SqliteBackend:
    backend = ledger.conns.backend
    assert isinstance(backend, SqliteBackend)
    return backend


def _threads(db_path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"guard-wal-checkpoint:{db_path}"]


def test_no_commit_checkpoints_inline_when_the_log_crosses_sqlites_default_threshold(db_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{db_path}")
    try:
        _backend(ledger).checkpointer.interval = 3600.0  # the thread is there but does not tick in this test
        ledger.open_run("r1", TEAM, actor=AGENT)
        _calls(ledger, "r1", 400)
        # An inline checkpoint at SQLite's default (1,000 pages) would have started the log over below that.
        assert 1_000 < _frames(db_path) < BACKSTOP_PAGES
        assert _backend(ledger).checkpointer.checkpoints == 0
    finally:
        ledger.close()


def test_the_background_checkpoint_keeps_the_log_short_while_calls_are_written(db_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{db_path}")
    try:
        checkpointer = _backend(ledger).checkpointer
        checkpointer.interval = 0.01
        ledger.open_run("r1", TEAM, actor=AGENT)
        deadline = time.monotonic() + 60
        written = 0
        # Calls without a pause: the log starts over only through the thread's RESTART, so the longest log
        # any checkpoint found stays near RESTART_PAGES while far more is written in all.
        while (written < 2 * BACKSTOP_PAGES // 6 or checkpointer.restarts < 2) and time.monotonic() < deadline:
            _calls(ledger, "r1", 20)
            written += 20
        assert checkpointer.restarts >= 2 and checkpointer.last_error is None
        # Each call writes at least six pages (its row, an event and the stream head, in each of two commits);
        # the log never reached the writers' inline backstop (how far past RESTART_PAGES it gets before the
        # RESTART finds the writer lock free depends on the machine's load).
        assert RESTART_PAGES <= checkpointer.most_frames < BACKSTOP_PAGES < 6 * written
        assert ledger.verify_chain().ok
    finally:
        ledger.close()


def test_closing_the_ledger_stops_its_checkpoint_thread_and_a_later_write_starts_none(db_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{db_path}")
    ledger.open_run("r1", TEAM, actor=AGENT)  # the first write starts the thread
    [thread] = _threads(db_path)
    assert thread.is_alive() and thread.daemon
    ledger.close()
    assert not thread.is_alive() and _threads(db_path) == []
    assert not _backend(ledger).checkpointer.running


def test_a_read_after_a_write_on_the_same_connection_waits_on_a_busy_database_again(db_path: Path) -> None:
    """A write leaves its connection at busy_timeout=0 (its own retries wait for the lock); a read outside a write
    transaction gets SQLite's busy handler back before its first statement."""
    ledger = Ledger(f"sqlite:///{db_path}")
    try:
        ledger.open_run("r1", TEAM, actor=AGENT)
        with ledger.conns.write() as cur:
            cur.execute("PRAGMA busy_timeout")
            assert cur.fetchone()[0] == 0
        with ledger.conns.read() as cur:  # the pool hands back the connection the write used
            cur.execute("PRAGMA busy_timeout")
            assert cur.fetchone()[0] == 5000
        ledger.offer(request("r1"))
        with ledger.conns.connection() as conn:
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        ledger.close()


def test_one_ledger_of_a_file_checkpoints_its_log_and_another_takes_over_when_it_closes(db_path: Path) -> None:
    first, second = Ledger(f"sqlite:///{db_path}"), Ledger(f"sqlite:///{db_path}")  # as two processes would
    try:
        for ledger in (first, second):
            _backend(ledger).checkpointer.interval = 0.01
        first.open_run("r1", TEAM, actor=AGENT)  # each first write starts its ledger's thread
        second.open_run("r2", TEAM, actor=AGENT)
        leading = poll(lambda: [x for x in (first, second) if _backend(x).checkpointer.leading], what="one leads")
        [leader] = leading
        follower = second if leader is first else first
        poll(lambda: _backend(leader).checkpointer.checkpoints >= 5, what="the leader checkpointed")
        _calls(follower, "r2" if follower is second else "r1", 20)
        poll(lambda: _backend(leader).checkpointer.checkpoints >= 10, what="the leader went on checkpointing")

        assert not _backend(follower).checkpointer.leading
        assert _backend(follower).checkpointer.checkpoints == 0  # one thread copies the log, not one per writer
        leader.close()
        poll(lambda: _backend(follower).checkpointer.checkpoints > 0, what="the follower took over")
        assert _backend(follower).checkpointer.leading
    finally:
        first.close()
        second.close()
