"""The writers' queue of a SQLite ledger: every write transaction takes a file lock beside the database before
BEGIN IMMEDIATE, so a waiting writer is woken by the kernel when the holder lets go instead of sleeping; the lock
excludes connections of one process as well as processes, gives up after its timeout, and never outlives a
killed holder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ledger_support import AGENT, TEAM, request

from guard.errors import LedgerUnavailable
from guard.ledger import Ledger
from guard.ledger.backend import SqliteBackend
from guard.ledger.write_queue import QueuedConnection, WriteQueue
from guard.testing import poll


def _conn(path: Path) -> QueuedConnection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=QueuedConnection)
    assert isinstance(conn, QueuedConnection)
    return conn


def test_a_writer_waiting_behind_another_connection_gets_the_lock_when_the_holder_lets_go(tmp_path: Path) -> None:
    """Two connections of one process exclude each other; the waiter is handed the lock at the holder's release."""
    writers = WriteQueue(tmp_path / "l.db")
    first, second = _conn(tmp_path / "l.db"), _conn(tmp_path / "l.db")
    writers.take(first, timeout=1.0)
    got = threading.Event()

    def wait_for_it() -> None:
        writers.take(second, timeout=10.0)
        got.set()

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    poll(lambda: writers.waits == 1, what="the second writer waiting")
    assert not got.is_set()  # still held by the first
    writers.release(first)
    assert got.wait(10.0)
    waiter.join()
    writers.release(second)
    writers.stop()
    first.close()
    second.close()


def test_a_writer_gives_up_after_its_timeout_as_database_is_locked_and_the_lock_is_free_again_after(
    tmp_path: Path,
) -> None:
    """A holder that does not let go (a stopped process) costs a waiter its timeout, then a `database is locked`
    error; the abandoned wait never keeps the lock once the holder is gone."""
    writers = WriteQueue(tmp_path / "l.db")
    holder, waiter = _conn(tmp_path / "l.db"), _conn(tmp_path / "l.db")
    writers.take(holder, timeout=1.0)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        writers.take(waiter, timeout=0.05)
    assert writers.gave_up == 1
    writers.release(holder)
    third = _conn(tmp_path / "l.db")
    writers.take(third, timeout=10.0)  # the waiter thread took the abandoned wait's lock and let it go
    writers.release(third)
    writers.take(waiter, timeout=10.0)  # the connection that gave up writes again, with a new descriptor
    writers.release(waiter)
    writers.stop()
    for conn in (holder, waiter, third):
        conn.close()


_HOLD_AND_WAIT = """
import sqlite3, sys
from guard.ledger.write_queue import QueuedConnection, WriteQueue
path = sys.argv[1]
conn = sqlite3.connect(path, isolation_level=None, factory=QueuedConnection)
WriteQueue(path).take(conn, timeout=5.0)
print("held", flush=True)
sys.stdin.readline()
"""


def _holder(db: Path) -> subprocess.Popen[bytes]:
    """Another process holding the queue of `db` until a line reaches its stdin (use it in `with`)."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_AND_WAIT, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdout.readline() == b"held\n"
    return child


def test_a_writer_killed_while_it_holds_the_lock_leaves_it_free(tmp_path: Path) -> None:
    """The kernel drops the lock of a process that dies: a SIGKILLed writer never blocks the others."""
    db = tmp_path / "l.db"
    writers = WriteQueue(db)
    conn = _conn(db)
    with _holder(db) as child:
        with pytest.raises(sqlite3.OperationalError):
            writers.take(conn, timeout=0.05)  # held by the child
        child.kill()
    writers.take(conn, timeout=10.0)
    writers.release(conn)
    writers.stop()
    conn.close()


def test_a_ledger_write_holds_the_queue_until_its_commit_and_one_held_elsewhere_makes_it_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's writes go through the queue: while another process holds it, a write waits and then fails
    closed with LedgerUnavailable (nothing committed); once it is free, the write commits and lets it go."""
    monkeypatch.setattr("guard.ledger.backend.BUSY_TIMEOUT_MS", 100)
    db = tmp_path / "guard.db"
    ledger = Ledger(f"sqlite:///{db}")
    try:
        backend = ledger.conns.backend
        assert isinstance(backend, SqliteBackend)
        with _holder(db) as child:
            with pytest.raises(LedgerUnavailable):
                ledger.open_run("run-1", TEAM, actor=AGENT)
            assert ledger.get_run("run-1") is None
            child.communicate(b"done\n")
        run_id = ledger.open_run("run-1", TEAM, actor=AGENT).run_id
        offer = ledger.offer(request(run_id))
        assert offer.call_id
        # Nothing holds the lock after the commits: another descriptor takes it at once.
        other = _conn(db)
        WriteQueue(db).take(other, timeout=0.0)
        other.close()
    finally:
        ledger.close()


def test_threads_of_one_process_wait_on_its_place_and_never_try_the_file_while_one_of_them_writes(
    tmp_path: Path,
) -> None:
    """One thread of a process at a time tries for the file's lock: a second one sleeps on the process's place (a
    thread that kept trying would take the GIL back from the holder at every try), so it has not even opened its
    descriptor of the lock file while the first holds; it gets the lock at the first's release."""
    writers = WriteQueue(tmp_path / "l.db")
    first, second = _conn(tmp_path / "l.db"), _conn(tmp_path / "l.db")
    assert writers.take(first, timeout=1.0) is False  # nobody else wanted it
    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: waited.append(writers.take(second, timeout=10.0)))
    waiter.start()
    poll(lambda: writers.waits == 1, what="the second thread waiting")
    assert second.queue_fd == -1 and not waited  # asleep on the place, not at the file
    writers.release(first)
    waiter.join()
    assert waited == [True]  # it had to wait: the backend then flushes after the lock (log_sync)
    assert second.queue_fd >= 0
    writers.release(second)
    writers.stop()
    first.close()
    second.close()


def test_a_connection_closed_while_it_holds_its_place_lets_the_next_writer_in(tmp_path: Path) -> None:
    """Closing a connection lets go of the process's place with the file's lock, so no thread waits on a place
    that nothing holds any more."""
    writers = WriteQueue(tmp_path / "l.db")
    gone, next_one = _conn(tmp_path / "l.db"), _conn(tmp_path / "l.db")
    writers.take(gone, timeout=1.0)
    gone.close()
    assert writers.take(next_one, timeout=0.0) is False  # free at once: no wait, no other holder
    writers.release(next_one)
    writers.release(gone)  # nothing: it holds nothing any more
    writers.stop()
    next_one.close()


def test_a_child_forked_while_a_thread_of_its_parent_held_the_place_takes_the_queue(tmp_path: Path) -> None:
    """The place is the process's: a child forked while another thread of the parent held it (that thread does not
    exist in the child) gets places of its own and writes."""
    db = tmp_path / "l.db"
    writers = WriteQueue(db)
    place = _place_of(writers)
    place.acquire()  # as a thread of this process does between its place and the file's lock
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only when it took and let go of the queue
            code = 1
            try:
                conn = _conn(db)
                WriteQueue(db).take(conn, timeout=2.0)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        place.release()
        writers.stop()


def _place_of(writers: WriteQueue) -> threading.Lock:
    return writers._place  # pyright: ignore[reportPrivateUsage]
