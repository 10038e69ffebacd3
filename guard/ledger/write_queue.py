"""The queue of a SQLite ledger's writers: a file lock beside the database that every write transaction takes
before `BEGIN IMMEDIATE`, so writers wait in the kernel instead of sleeping and trying again.

SQLite lets a writer that finds the file's write lock taken either fail at once or sleep in its busy handler
and try again. With several processes, a sleeper misses the moments the lock is free between two commits of the
others (each holds it for a fraction of a millisecond): the tail grows to hundreds of milliseconds at eight
processes, and to seconds beyond. Here a writer first takes an exclusive `flock` on `<ledger>-writers`. A
writer that finds it held blocks in the kernel, which wakes it the moment the holder lets go (at its commit or
rollback); then `BEGIN IMMEDIATE` finds SQLite's lock free, unless a writer that does not queue here holds it
(a migration, a checkpoint's RESTART, another program), which the backend's own short retries still cover.
Before it waits in the kernel, a writer that finds the lock held yields the CPU and tries again, up to
`TRIES_BEFORE_WAITING` times: the holder usually lets go within that. A wait in the kernel costs more than the
two thread wake-ups of its handoff: while the other writers sleep there, the lock stays free from the moment
its holder lets go until the woken one runs, and with more processes than cores that is often a whole time
slice (a lock convoy). A writer that yields gives its core to the others (the holder
among them) and takes the lock as soon as it runs again after the holder let go. Where nothing else wants the
CPU a try costs about 1.5 us, so the tries run out within about half a millisecond (two transactions or so)
before the writer sleeps: a holder that stopped (SIGSTOP) costs each writer that much CPU once.

`flock` belongs to an open file, not to a process: each connection opens the file once and holds its own
descriptor. The kernel drops the lock of a process that dies, so a killed writer never leaves it taken. Within a
process the writers of one file first take the process's place for it (a `threading.Lock` per file path, shared by
every `WriteQueue` of the process on that file), so one thread of a process at a time tries for the file's lock
and the others sleep on the place: a thread that kept trying would take the GIL back from the holder at every try
(8 threads of one process made 372-416 calls/s so, against 779-865 waiting in the kernel).

A blocking `flock` cannot time out, and a writer must not wait forever on a process that stopped while it held
the lock (SIGSTOP): the blocking call is made by one waiter thread per process, which the writer waits on for at
most the busy timeout. A writer that gives up raises SQLite's own `database is locked` (the ledger turns it into
`LedgerUnavailable`, as before), and the descriptor it was waiting with goes to the waiter thread, which lets
the lock go and closes it when it gets it; the connection opens a new one for its next write. The uncontended
case is one non-blocking `flock` call (about a microsecond) and the release another.

States of a connection's queue place: none (no descriptor yet) -> open (`take` opened it) -> held (after `take`:
the process's place and the file's lock) -> open (after `release`) -> closed (`close`, with the connection, which
lets both go if it still held them). The waiter thread: idle (not started) ->
running (on the first wait of the process) -> stopped (`stop`, when the ledger closes; a waiter blocked on a
stopped holder is a daemon and is not waited for).
"""

from __future__ import annotations

import fcntl
import os
import queue
import sqlite3
import threading
import time
import weakref
from pathlib import Path

__all__ = ["QueueHandle", "QueuedConnection", "WriteQueue"]

# A writer that finds the lock held yields the CPU and tries again this many times before it waits in the kernel
# (through the waiter thread). A holder lets go within one transaction (0.1-0.3 ms). 300 against 10, 8 processes
# on 2 cores (bench.workers, README): 1.5-1.7x the calls per second on a disk, 1.3x on tmpfs; p99 no higher.
TRIES_BEFORE_WAITING = 300

_live: weakref.WeakSet[WriteQueue] = weakref.WeakSet()
_places: dict[str, threading.Lock] = {}  # the process's place in each file's queue, by the lock file's path
_places_lock = threading.Lock()


def _place(path: str) -> threading.Lock:
    with _places_lock:
        return _places.setdefault(path, threading.Lock())


class _Holder:
    """What takes a place in the queue: a descriptor of the lock file, and the process's place while it holds it."""

    queue_fd: int = -1
    place: threading.Lock | None = None  # the process's place for the file, while this one holds it

    def let_go(self) -> None:
        """Let the file's lock and the process's place go; nothing when this one does not hold them."""
        place, self.place = self.place, None
        if place is None:
            return
        if self.queue_fd >= 0:
            fcntl.flock(self.queue_fd, fcntl.LOCK_UN)
        place.release()

    def close(self) -> None:
        self.let_go()
        fd, self.queue_fd = self.queue_fd, -1
        if fd >= 0:
            os.close(fd)


class QueuedConnection(_Holder, sqlite3.Connection):
    """A SQLite connection that keeps its own descriptor of the writers' lock file (opened on its first write),
    closed with it."""

    synchronous: str = ""  # the connection's `PRAGMA synchronous` as the backend last set it
    flush_after: bool = False  # the write transaction in progress commits without waiting; the backend flushes

    def close(self) -> None:
        _Holder.close(self)
        sqlite3.Connection.close(self)


class QueueHandle(_Holder):
    """A place in the writers' queue held without a SQLite connection: a migration queues with one, so the writers
    of other processes wait for it in the kernel too, and so do the processes that wait for it to finish."""


class _Wait:
    """One writer's blocking wait, handed to the waiter thread. `done` is a plain lock, taken at creation and let go
    by the waiter thread once the writer holds the queue: a writer waits on it with a timeout. (A
    `threading.Event` would build a Condition and a lock of its own per wait: with eight processes nearly every
    write waits, and those objects were a tenth of the writer's CPU per call.)"""

    __slots__ = ("abandoned", "done", "fd", "mutex")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.done = threading.Lock()
        self.done.acquire()
        self.mutex = threading.Lock()
        self.abandoned = False


class WriteQueue:
    """The writers' queue of one SQLite file in one process. Thread-safe."""

    def __init__(self, db_path: Path) -> None:
        self.path = f"{db_path}-writers"
        self.waits = 0  # writers that slept: behind another thread of this process, or in the kernel
        self.gave_up = 0  # writers that waited the whole timeout
        self._place = _place(self.path)
        self._requests: queue.SimpleQueue[_Wait | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        _live.add(self)

    def take(self, conn: QueuedConnection | QueueHandle, timeout: float) -> bool:
        """Hold the writers' lock for `conn` (until `release`); waits at most `timeout` seconds behind other
        writers, then raises `sqlite3.OperationalError('database is locked')`. Returns True when another writer
        held it at first (this one had to wait for it)."""
        place = self._place
        if place.acquire(blocking=False):
            waited = False
        else:  # another thread of this process writes to the file: sleep until it is done
            self.waits += 1
            start = time.monotonic()
            if timeout <= 0 or not place.acquire(timeout=timeout):
                self.gave_up += 1
                raise sqlite3.OperationalError("database is locked (waited for the other writers of this process)")
            waited, timeout = True, max(0.0, timeout - (time.monotonic() - start))
        try:
            held = self._take_file(conn, timeout)
        except BaseException:
            place.release()
            raise
        conn.place = place
        return waited or held

    def _take_file(self, conn: QueuedConnection | QueueHandle, timeout: float) -> bool:
        """The file's lock, for the thread holding the process's place."""
        fd = conn.queue_fd
        if fd < 0:
            fd = conn.queue_fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        for tried in range(TRIES_BEFORE_WAITING):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return tried > 0
            except BlockingIOError:
                os.sched_yield()  # the holder (or another writer) runs; it lets go within one transaction
        self.waits += 1
        wait = _Wait(fd)
        self._waiter().put(wait)
        if wait.done.acquire(timeout=timeout):
            return True
        with wait.mutex:
            if wait.done.acquire(blocking=False):  # got it just now
                return True
            wait.abandoned = True  # the waiter thread lets it go and closes `fd` when it gets it
        conn.queue_fd = -1
        self.gave_up += 1
        raise sqlite3.OperationalError("database is locked (waited for the other writers of the ledger)")

    @staticmethod
    def release(conn: QueuedConnection | QueueHandle) -> None:
        """Let the next writer go (after the commit or rollback); nothing when `conn` does not hold it."""
        conn.let_go()

    def stop(self) -> None:
        """Stop the waiter thread once it has served the waits before this call (it is not waited for: one
        blocked behind a stopped process stays blocked until that process goes on or dies)."""
        with self._lock:
            if self._thread is not None:
                self._requests.put(None)
                self._thread = None

    def _waiter(self) -> queue.SimpleQueue[_Wait | None]:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(
                        target=self._serve, args=(self._requests,), name=f"guard-write-queue:{self.path}", daemon=True
                    )
                    thread.start()
                    self._thread = thread
        return self._requests

    @staticmethod
    def _serve(requests: queue.SimpleQueue[_Wait | None]) -> None:
        while (wait := requests.get()) is not None:
            fcntl.flock(wait.fd, fcntl.LOCK_EX)  # blocks in the kernel until the holder lets go
            with wait.mutex:
                if not wait.abandoned:
                    wait.done.release()
                    continue
            fcntl.flock(wait.fd, fcntl.LOCK_UN)
            os.close(wait.fd)

    def _forget_thread(self) -> None:
        """In a fork's child: the parent's thread does not exist here."""
        self._thread = None
        self._requests = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._place = _place(self.path)


def _after_fork_in_child() -> None:
    global _places_lock
    _places.clear()  # a place another thread of the parent held stays held in the child: new ones
    _places_lock = threading.Lock()
    for writers in list(_live):
        writers._forget_thread()  # pyright: ignore[reportPrivateUsage]


os.register_at_fork(after_in_child=_after_fork_in_child)
