"""Checkpointing a SQLite ledger's write-ahead log in a background thread, never inside a commit.

In WAL mode every commit appends pages to the `-wal` file; a checkpoint copies them back into the database file
and lets the log start over. By default SQLite runs that checkpoint inline, in whichever commit crosses 1,000
pages: one call in a few hundred pays for copying megabytes and two disk flushes, and on a large ledger (whose
commits touch more index pages) that call is the tail of the latency (p99 ten times p50).

Here each process that writes a SQLite ledger runs one thread that asks for a PASSIVE checkpoint every
`interval` seconds, on a connection of its own: it copies the log's pages into the database file and flushes
it, alongside the writers, never blocking one. The log starts over from its beginning only when a writer begins
with every page of it copied; writers that never pause (a loop of calls) never let that happen, so once the log
holds `RESTART_PAGES` the thread asks for a RESTART checkpoint instead: it waits for the writer lock, copies the
pages written since its PASSIVE pass (a tick's worth), and holds new writers back for that moment, after which
the next commit starts the log over. One commit in several hundred waits a few milliseconds, instead of one in
a hundred copying the whole log inline. The writers' own connections keep an inline checkpoint only as a
backstop, at `BACKSTOP_PAGES` (40 MiB): should the thread be stopped or starved, the log still cannot grow
without bound. The file is cut back to `WAL_SIZE_LIMIT` bytes when the log starts over. (A read transaction
held open for minutes pins the log's pages after its snapshot either way; that is SQLite's rule.)

One process checkpoints a file, not every process that writes it: the thread checkpoints only while it holds an
exclusive `flock` on `<ledger>-checkpoint`, taken without waiting and kept until the ledger closes (the kernel
drops it with a process that dies). The threads of the other processes try to take it every `FOLLOW_TICKS`
ticks, sleeping in between: with eight processes, eight threads copying the same log every tenth of a second cost
a twentieth of each call's CPU and only one of them found pages left to copy.

States: idle (no thread) -> running (`ensure_running`, on the first write of the process) -> stopped (`stop`,
when the ledger closes: the thread finishes the checkpoint it is in, if any, closes its connection, lets the
lock go and ends; waited for). While running, the thread either leads (holds the lock, checkpoints each tick) or
follows (tries the lock every `FOLLOW_TICKS` ticks). A fork's child holds no thread and no lock: its first write
starts its own thread, a follower. Failures (the file is gone, an I/O error) are kept in `last_error` and tried
again at the next tick; the backstop covers the meantime.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import weakref

__all__ = ["BACKSTOP_PAGES", "FOLLOW_TICKS", "INTERVAL", "RESTART_PAGES", "WAL_SIZE_LIMIT", "Checkpointer"]

INTERVAL = 0.1  # seconds between two checkpoints
FOLLOW_TICKS = 10  # a follower sleeps this many ticks (a second) between tries to lead: soon after a leader goes
RESTART_PAGES = 2_000  # a log this long (8 MiB) is started over (RESTART) rather than only copied (PASSIVE)
RESTART_WAIT_MS = 1_000  # how long a RESTART waits for the writer lock before it tries again at the next tick
BACKSTOP_PAGES = 10_000  # `wal_autocheckpoint` of the writers' connections: only if the thread falls behind
WAL_SIZE_LIMIT = 16 * 2**20  # `journal_size_limit`: the log file is cut back to this after it starts over
PRAGMAS = (f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}", f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")

_live: weakref.WeakSet[Checkpointer] = weakref.WeakSet()


class Checkpointer:
    """One background thread per ledger file and process that runs `PRAGMA wal_checkpoint(PASSIVE)` on a
    schedule. Thread-safe; `ensure_running` is cheap enough to call on every write."""

    def __init__(self, path: str, interval: float = INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0  # checkpoints run
        self.most_frames = 0  # the longest log a checkpoint found, in pages (how far the log grew between two)
        self.restarts = 0  # RESTART checkpoints asked for
        self.last_error: BaseException | None = None
        self._lead_fd = -1  # the descriptor holding `<ledger>-checkpoint` while this process leads
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        _live.add(self)

    @property
    def leading(self) -> bool:
        """This process checkpoints the file (its thread holds the checkpoint lock)."""
        return self._lead_fd >= 0

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def ensure_running(self) -> None:
        """Start the thread unless it runs already or the ledger was closed."""
        if self._thread is not None or self._closed:
            return
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._stop.clear()
            thread = threading.Thread(
                target=self._run, name=f"guard-wal-checkpoint:{self.path}", daemon=True
            )  # a process that exits without closing its ledger is not held
            thread.start()
            self._thread = thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and wait for it (it finishes the checkpoint it is in); later writes start no other."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def checkpoint(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        """One tick on `conn`: a PASSIVE checkpoint, then a RESTART when the log holds `RESTART_PAGES` or more.
        Returns the PASSIVE pass's (busy, pages in the log, pages copied), as SQLite reports them."""
        busy, log, copied = (int(v) for v in conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        self.checkpoints += 1
        self.most_frames = max(self.most_frames, log)
        if log >= RESTART_PAGES:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()  # busy (1) when it could not: next tick
            self.restarts += 1
        return busy, log, copied

    def _lead(self) -> bool:
        """Take the checkpoint lock if no other process holds it; True while this process holds it."""
        if self._lead_fd >= 0:
            return True
        fd = os.open(f"{self.path}-checkpoint", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lead_fd = fd
        return True

    def _step_down(self) -> None:
        fd, self._lead_fd = self._lead_fd, -1
        if fd >= 0:
            os.close(fd)  # the lock goes with the last descriptor of its file

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        pause = self.interval
        try:
            while not self._stop.wait(pause):
                try:
                    if not self._lead():
                        pause = self.interval * FOLLOW_TICKS  # another process checkpoints this file
                        continue
                    pause = self.interval
                    if conn is None:
                        conn = sqlite3.connect(self.path, isolation_level=None, timeout=RESTART_WAIT_MS / 1000)
                        conn.execute("PRAGMA synchronous=FULL")  # the log is flushed before, the file after
                    self.checkpoint(conn)
                except (sqlite3.Error, OSError) as exc:  # tried again next tick; the backstop covers the meantime
                    self.last_error = exc
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()
            self._step_down()  # after the connection: the next leader never overlaps this one's last checkpoint

    def _forget_thread(self) -> None:
        """In a fork's child: the parent's thread does not exist here, and the lock is the parent's (closing the
        child's copy of the descriptor leaves it with the parent; unlocking it would not)."""
        self._thread = None
        self._lock = threading.Lock()
        fd, self._lead_fd = self._lead_fd, -1
        if fd >= 0:
            os.close(fd)


def _after_fork_in_child() -> None:
    for checkpointer in list(_live):
        checkpointer._forget_thread()  # pyright: ignore[reportPrivateUsage]


os.register_at_fork(after_in_child=_after_fork_in_child)
