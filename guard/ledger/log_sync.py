"""A SQLite ledger's durable commits: the log flushed to disk after the commit, outside the write lock.

SQLite in WAL mode with `synchronous=FULL` flushes the log (`fdatasync`) inside its commit, while it still holds
the file's one write lock: every other writer, of this process or another, waits for that flush too. On this
machine a flush is about 80 us of a ~220 us write transaction, and a guarded call makes two of them, so with one
writer at a time the flushes alone bound a ledger's calls per second, however many processes share it.

So once other writers want the lock (`guard.ledger.backend.SqliteBackend` decides when), a durable transaction
commits with `synchronous=NORMAL` (the commit's pages are in the log file, handed to the OS, not yet flushed),
the writer lets the lock go, and only then flushes the log itself before its write returns (`LogSync.sync`). The
next writer writes while the last one waits for the disk, and one flush covers every commit written before it
started: what PostgreSQL calls group commit. A durable write still returns only once it is on disk. (A writer
alone keeps SQLite's own flush inside the commit, which costs it less.)

What a commit that has not yet returned is: visible to other connections, and safe from a killed process (its
pages are in the OS's cache), but not yet from a power cut. Nothing acts on it outside the ledger before it is
durable: a writer acts only after its own write returns, and any later durable commit flushes the same log, so
it carries every commit before it (a log restarted meanwhile was checkpointed first, which flushes the log and
then the database file: `synchronous=NORMAL` in WAL mode).

The log file: opened once per process and kept (an `fdatasync` on any descriptor of a file flushes all of it).
When the file at the log's path is another one than the kept descriptor's (the last connection to close a
ledger checkpoints and removes its log; the next write creates a new one), the new one is opened, and its
directory flushed once, so the new file's name survives a power cut as well. No log file at all means the last
closing connection has checkpointed everything into the database file and flushed it: nothing to do.

Within a process, concurrent writers share flushes: each commit takes a number (`written`) after its commit
and before its flush; a flush that began after a number was taken covers that commit, so a writer whose commit
is covered when it gets the flush lock returns at once.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from pathlib import Path

__all__ = ["LogSync"]

_live: weakref.WeakSet[LogSync] = weakref.WeakSet()


class LogSync:
    """Flushes one SQLite ledger's write-ahead log to disk. Thread-safe."""

    def __init__(self, db_path: Path) -> None:
        self.path = f"{db_path}-wal"
        self.flushes = 0  # fdatasync calls made (a figure for tests and benches)
        self._numbers = itertools.count(1)
        self._taken = 0  # the last number handed out (next(self._numbers) - 1, read under the GIL)
        self._synced = 0  # every commit numbered up to this is on disk
        self._lock = threading.Lock()
        self._fd = -1
        self._file: tuple[int, int] | None = None  # (st_dev, st_ino) of the kept descriptor's file
        _live.add(self)

    def written(self) -> int:
        """A number for a commit that has just been written (call after the COMMIT returned, before `sync`)."""
        number = self._taken = next(self._numbers)
        return number

    def sync(self, number: int) -> None:
        """Return once the commit numbered `number` is on disk (flushing the log unless a flush that began after
        it was written has already finished). Raises OSError when the flush fails: the commit may be lost."""
        with self._lock:
            if self._synced >= number:
                return
            upto = self._taken  # every commit numbered up to here was written before this flush begins
            fd = self._descriptor()
            if fd >= 0:
                os.fdatasync(fd)
                self.flushes += 1
            self._synced = max(self._synced, upto)

    def close(self) -> None:
        with self._lock:
            fd, self._fd, self._file = self._fd, -1, None
            if fd >= 0:
                os.close(fd)

    def _descriptor(self) -> int:
        """The kept descriptor of the file now at the log's path (opened anew when that file changed); -1 when
        there is no log file (everything is in the database file, flushed by the checkpoint that removed it)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return -1
        if self._file == (st.st_dev, st.st_ino):
            return self._fd
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return -1
        folder = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(folder)  # the new log's name, once
        finally:
            os.close(folder)
        st = os.fstat(fd)
        old, self._fd, self._file = self._fd, fd, (st.st_dev, st.st_ino)
        if old >= 0:
            os.close(old)
        return fd

    def _forget_lock(self) -> None:
        """In a fork's child: a parent's thread may have held the lock at the fork; it never lets go here."""
        self._lock = threading.Lock()


def _after_fork_in_child() -> None:
    for log in list(_live):
        log._forget_lock()  # pyright: ignore[reportPrivateUsage]


os.register_at_fork(after_in_child=_after_fork_in_child)
