"""A SQLite ledger's durable write returns once its commit is on disk. With no other writer, SQLite flushes inside
the commit (`synchronous=FULL`). Once another writer has wanted the write lock (within `SHARED_FOR` seconds), the
write commits without waiting (`synchronous=NORMAL`), lets the writers' lock go, and then flushes the log
(`fdatasync` of `<ledger>-wal`) before the block ends; one flush serves every commit written before it began; a
log file replaced meanwhile is followed; a flush that fails is an error of the write, never a silent success."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from unittest.mock import patch

import pytest
from log_flushes import file_of, spied_flushes

from guard.errors import LedgerUnavailable
from guard.ledger import Ledger
from guard.ledger import backend as backend_module
from guard.ledger.backend import SqliteBackend
from guard.ledger.log_sync import LogSync
from guard.ledger.write_queue import QueuedConnection
from guard.testing import poll

pytestmark = pytest.mark.sqlite_only  # SQLite's log file; PostgreSQL's COMMIT waits for its server's flush


@pytest.fixture(autouse=True)
def _shared_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer seen once keeps this module's ledgers flushing after the lock for a minute, however slow
    the machine running the test is (`SHARED_FOR` is a second)."""
    monkeypatch.setattr(backend_module, "SHARED_FOR", 60.0)


def _sqlite_ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def _share_the_lock(ledger: Ledger) -> None:
    """Another writer (a second connection) holds the writers' lock while one of the ledger's writes begins, so
    the ledger has seen another writer want the lock (and its durable commits flush after the lock for a while)."""
    backend = ledger.conns.backend
    assert isinstance(backend, SqliteBackend)
    other = sqlite3.connect(backend.path, isolation_level=None, check_same_thread=False, factory=QueuedConnection)
    assert isinstance(other, QueuedConnection)
    waits = backend.writers.waits
    backend.writers.take(other, timeout=5.0)

    def write() -> None:
        with ledger.conns.write():
            pass

    writer = threading.Thread(target=write)
    writer.start()
    poll(lambda: backend.writers.waits > waits, what="the ledger's write waiting behind the other writer")
    backend.writers.release(other)
    writer.join()
    other.close()


def _synchronous_at_commit(ledger: Ledger, durable: bool = True) -> int:
    with ledger.conns.write(durable) as cur:
        cur.execute("PRAGMA synchronous")
        return int(cur.fetchone()[0])


def test_with_no_other_writer_sqlite_flushes_inside_the_commit_and_the_write_makes_no_flush_of_its_own(
    tmp_path: Path,
) -> None:
    ledger = _sqlite_ledger(tmp_path)
    with spied_flushes() as flushed:
        assert _synchronous_at_commit(ledger) == 2  # FULL: the COMMIT waits for the disk itself
        assert _synchronous_at_commit(ledger, durable=False) == 1  # a lazy one: NORMAL
        assert _synchronous_at_commit(ledger) == 2
    assert flushed == []
    ledger.close()


def test_once_another_writer_wanted_the_lock_durable_commits_flush_after_it_until_that_is_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _sqlite_ledger(tmp_path)
    log = f"{tmp_path / 'ledger.db'}-wal"
    _share_the_lock(ledger)
    with spied_flushes() as flushed:
        assert _synchronous_at_commit(ledger) == 1  # NORMAL: flushed by the write, after the lock
        assert flushed == [file_of(log)]
    monkeypatch.setattr(backend_module, "SHARED_FOR", 0.0)
    _share_the_lock(ledger)  # seen again, but only for no time at all
    with spied_flushes() as flushed:
        assert _synchronous_at_commit(ledger) == 2
    assert flushed == []
    ledger.close()


@pytest.mark.tampers
def test_a_durable_write_flushes_the_log_after_its_commit_and_after_letting_the_writers_lock_go(
    tmp_path: Path,
) -> None:
    ledger = _sqlite_ledger(tmp_path)
    log = f"{tmp_path / 'ledger.db'}-wal"
    _share_the_lock(ledger)
    lock_free_at_flush: list[bool] = []
    committed_at_flush: list[int] = []

    def at_flush(fd: int) -> None:
        probe = os.open(f"{tmp_path / 'ledger.db'}-writers", os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while a writer holds the queue
            fcntl.flock(probe, fcntl.LOCK_UN)
            lock_free_at_flush.append(True)
        except BlockingIOError:
            lock_free_at_flush.append(False)
        finally:
            os.close(probe)
        with ledger.conns.read() as cur:  # another connection sees the commit already: it was made before
            cur.execute("SELECT count(*) FROM runs WHERE run_id = 'run-flushed'")
            committed_at_flush.append(int(cur.fetchone()[0]))

    with spied_flushes(at_flush) as flushed:
        with ledger.conns.write() as cur:
            cur.execute(
                "INSERT INTO runs(run_id, team, state, requires_review, created_at, updated_at)"
                " VALUES ('run-flushed', 't', 'running', 0, 0, 0)"
            )
        assert flushed == [file_of(log)]  # the ledger's own log, once, before the block ended
    assert lock_free_at_flush == [True]
    assert committed_at_flush == [1]
    ledger.close()


def test_a_lazy_write_returns_without_flushing_and_the_next_durable_write_flushes_both(tmp_path: Path) -> None:
    ledger = _sqlite_ledger(tmp_path)
    _share_the_lock(ledger)
    with spied_flushes() as flushed:
        with ledger.conns.write(durable=False):
            pass
        assert flushed == []
        with ledger.conns.write():
            pass
        assert len(flushed) == 1
    ledger.close()


def test_one_flush_serves_every_commit_written_before_it_began(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    Path(f"{path}-wal").write_bytes(b"log")
    log = LogSync(path)
    first, second = log.written(), log.written()  # two commits written, neither flushed yet
    with spied_flushes() as flushed:
        log.sync(second)
        log.sync(first)  # covered: the flush for `second` began after `first` was written
        assert len(flushed) == 1
        third = log.written()
        log.sync(third)  # written after that flush began: flushed again
        assert len(flushed) == 2
    assert log.flushes == 2
    log.close()


def test_concurrent_writers_of_one_process_each_return_only_after_a_flush_that_began_after_their_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l.db"
    Path(f"{path}-wal").write_bytes(b"log")
    log = LogSync(path)
    written: list[int] = []
    begun: list[int] = []  # the highest number written when each flush began
    ends: dict[int, int] = {}  # number -> flushes begun when its sync returned
    guard_list = threading.Lock()

    def at_flush(fd: int) -> None:
        with guard_list:
            begun.append(max(written))

    def writer() -> None:
        for _ in range(50):
            with guard_list:
                number = log.written()
                written.append(number)
            log.sync(number)
            with guard_list:
                ends[number] = len(begun)

    with spied_flushes(at_flush):
        threads = [threading.Thread(target=writer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(ends) == 200
    for number, flushes_before_return in ends.items():
        # some flush that had begun by the time this sync returned began after `number` was written
        assert any(upto >= number for upto in begun[:flushes_before_return]), number
    assert len(begun) <= 200
    log.close()


def test_a_log_file_replaced_since_the_last_flush_is_followed_and_its_directory_flushed(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    wal = Path(f"{path}-wal")
    wal.write_bytes(b"first log")
    log = LogSync(path)
    directories: list[str] = []
    real_fsync = os.fsync

    def fsync_spy(fd: int) -> None:
        directories.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    with spied_flushes() as flushed, patch.object(os, "fsync", fsync_spy):
        log.sync(log.written())
        first = file_of(str(wal))
        wal.unlink()  # the last connection of a ledger checkpointed and removed its log
        log.sync(log.written())  # no log: everything is in the database file, flushed by that checkpoint
        wal.write_bytes(b"second log")
        log.sync(log.written())
        second = file_of(str(wal))
    assert flushed == [first, second]
    assert directories == [str(tmp_path), str(tmp_path)]  # each new log's name, once
    log.close()


def test_a_flush_that_fails_fails_the_write_and_the_ledger_says_the_commit_may_not_be_on_disk(
    tmp_path: Path,
) -> None:
    ledger = _sqlite_ledger(tmp_path)
    _share_the_lock(ledger)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with (
        patch.object(os, "fdatasync", broken),
        pytest.raises(LedgerUnavailable, match="could not be flushed"),
        ledger.conns.write(),
    ):
        pass
    with ledger.conns.write():  # the next write goes on as usual
        pass
    ledger.close()


def test_a_process_forked_while_another_thread_flushes_can_flush_in_the_child(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    Path(f"{path}-wal").write_bytes(b"log")
    log = LogSync(path)
    in_flush, go_on = threading.Event(), threading.Event()

    parent = os.getpid()

    def slow_flush(fd: int) -> None:
        if os.getpid() == parent:  # the parent's flusher waits inside its flush; the child's goes straight on
            in_flush.set()
            go_on.wait(10.0)

    with spied_flushes(slow_flush):
        flusher = threading.Thread(target=lambda: log.sync(log.written()))
        flusher.start()
        assert in_flush.wait(10.0)  # the flusher holds the log's lock now
        pid = os.fork()
        if pid == 0:  # the child: the parent's flusher does not exist here, its lock must not either
            status = 1
            try:
                log.sync(log.written())
                status = 0
            finally:
                os._exit(status)
        go_on.set()
        flusher.join()
    ended: list[int] = []

    def child_ended() -> bool:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            ended.append(status)
        return bool(ended)

    try:
        poll(child_ended, what="the child's flush (it hangs on a lock its parent's thread held at the fork)")
    finally:
        if not ended:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(ended[0]) == 0
    log.close()
