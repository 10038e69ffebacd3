"""Database backends: the small port the ledger writes through, and the factory that picks one by URL.

SQLite and PostgreSQL differ only in how a write transaction takes its locks, how placeholders are spelled,
how a commit that need not wait for the disk is asked for, and how a waiting agent is woken. The hot path
talks to the DB-API connection directly with prepared SQL text: an ORM round-trip per field would cost more
than the commits themselves.
"""

from __future__ import annotations

import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager, suppress
from typing import Any, Protocol, TypeVar, cast

from guard.errors import LedgerBusy, LedgerNotReady, LedgerUnavailable
from guard.ledger.checkpoint import PRAGMAS as CHECKPOINT_PRAGMAS
from guard.ledger.checkpoint import Checkpointer
from guard.ledger.database import ensure_ready, shown_url, sqlite_path
from guard.ledger.lease_clock import WORKER_CLOCK, LeaseClock
from guard.ledger.log_sync import LogSync
from guard.ledger.pool import PoolLimits
from guard.ledger.write_queue import QueuedConnection, WriteQueue

__all__ = [
    "Backend",
    "CommitRefused",
    "Connections",
    "SqliteBackend",
    "folding",
    "open_backend",
    "shown_url",
    "unavailable",
]

BUSY_TIMEOUT_MS = 5000
# SQLite: for this many seconds after a writer of this process found the write lock held by another, durable
# commits let the lock go before the disk flush (`SqliteBackend`); with no other writer, SQLite flushes inside.
SHARED_FOR = 1.0
# Writers queue for SQLite's write lock in the kernel (`guard.ledger.write_queue`) before BEGIN IMMEDIATE. A
# writer that still finds the lock taken (by one that does not queue: a migration, a checkpoint's RESTART,
# another program) tries BEGIN IMMEDIATE again after a short jittered pause that doubles up to a cap: SQLite's
# own busy handler sleeps 1, 2, 5, 10 ... 100 ms between tries and would sleep through the moments it is free.
_RETRY_FIRST, _RETRY_CAP = 0.0002, 0.002
_BUSY_TIMEOUT = f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}"
_T = TypeVar("_T")


class CommitRefused(Exception):
    """A transaction's last statement, sent with its COMMIT (`commit_with_next`, PostgreSQL), would not write all it
    was given (a taken key, a stream head another process moved) and refused: the whole transaction was rolled back,
    nothing of it is in the ledger. Its writer makes it again from the start without `commit_with_next`, where the
    plain statement says what it found. Never leaves the ledger."""


def folding(write: Callable[[bool], _T]) -> _T:
    """`write(True)`, a transaction whose last statement may carry its COMMIT; when that statement refused
    (`CommitRefused`: nothing of it was written), `write(False)`, the same transaction made the plain way."""
    try:
        return write(True)
    except CommitRefused:
        return write(False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unavailable(url: str, what: str) -> LedgerUnavailable:
    """The error for a database that failed or cannot be reached, naming it (without its password) and what to
    do. The guard fails closed: a call whose `offered` or `started` is not committed never runs its tool."""
    shown = shown_url(url)
    return LedgerUnavailable(
        f"{shown}: {what}. A call whose offer or start could not be committed was refused and its tool did not "
        "run. Check that the database server is up and reachable from this host; Guard reconnects by itself "
        "once it is, so make the call again then (its idempotency key keeps it from running twice)",
        url=shown,
        database=shown,
    )


class Backend(Protocol):
    """What a database must provide to hold the ledger."""

    url: str

    def connect(self) -> Any:
        """A new DB-API connection in autocommit mode (transactions are explicit); its commits wait for the disk."""
        ...

    def begin_write(self, cur: Any, durable: bool = True, lock: str | None = None) -> None:
        """Start a write transaction.

        SQLite: `BEGIN IMMEDIATE`, the file's one write lock, held until commit (`lock` is covered by it).
        PostgreSQL: READ COMMITTED; writers of different runs go side by side, each change of an existing row is a
        compare-and-set, and `lock` (a name: `run:<id>`, `approval:<id>`, `seal`) is a transaction-scoped lock that
        serialises only the transactions naming it, for the read-check-write steps a compare-and-set cannot cover
        alone (a run's next sequence number and its stop-rule counts, an approval's quorum).

        `durable=False`: this transaction's commit returns without waiting for the disk (SQLite's
        synchronous=NORMAL in WAL mode; PostgreSQL's `SET LOCAL synchronous_commit = off`). Such a commit is
        durable once any later durable commit returns, because the log is written and flushed in order; a
        process that dies loses nothing of it, only a machine that loses power before that flush does.
        """
        ...

    def end_write(self, cur: Any) -> bool:
        """After the commit or rollback (called after every write transaction): let go of what `begin_write`
        took beyond the transaction (SQLite: the writers' queue). True when a commit made now is not on disk yet
        and waits for `flush` (SQLite, while other writers want the lock). Raises when it cannot; the connection
        is then closed, never reused."""
        ...

    def flush(self) -> None:
        """After a durable commit for which `end_write` said so, once the connection is back: return once the
        commit is on disk (SQLite: the log is flushed here, outside the write lock, `guard.ledger.log_sync`).
        Raises OSError when the flush failed."""
        ...

    def is_unavailable(self, exc: BaseException) -> bool:
        """True when `exc` is a driver error meaning the database failed (not a constraint)."""
        ...

    def clock(self, cur: Any) -> float:
        """The database's own clock, in Unix seconds: what expiry is judged by, whatever the host's clock says."""
        ...

    # `clock` as an SQL expression, for a statement that reads the clock along with what it reads anyway.
    clock_sql: str

    # Which clock judges leases (guard.ledger.lease_clock): the worker's on SQLite, the server's on PostgreSQL.
    lease_clock: LeaseClock

    def writers_now(self, cur: Any) -> tuple[str, ...] | None:
        """A mark of the transactions in progress now that inserted events, or None when none is (no id a reader
        sees missing below a visible one can still be committed). With a mark, `writers_ended` tells when all of
        them ended."""
        ...

    def writers_ended(self, cur: Any, mark: tuple[str, ...]) -> bool:
        """Every event-writing transaction in progress when `writers_now` gave `mark` has ended (committed or
        rolled back)."""
        ...

    def lock(self, cur: Any, name: str) -> None:
        """Inside a write transaction, also take the lock `name` until it ends (see `begin_write`): for a count
        shared by the team's runs, which the run's own lock does not cover. SQLite: its one write lock covers it."""
        ...


class SqliteBackend:
    """A SQLite file in WAL mode. A durable commit is on disk when its write returns; a transaction begun with
    `durable=False` commits with synchronous=NORMAL (on disk at the next durable commit).

    Where a durable commit waits for the disk depends on whether other writers want the file's one write lock.
    While none has (this process found the lock free at every write for `SHARED_FOR` seconds): inside the commit,
    `synchronous=FULL`, SQLite's own flush, the cheapest way for one writer. Once one has: the commit is made with
    synchronous=NORMAL, the lock goes to the next writer, and then the log is flushed (`flush`,
    `guard.ledger.log_sync`), so writers no longer queue behind each other's disk flushes and one flush serves
    every commit of the process written before it.

    The log is checkpointed by a thread of this process (`guard.ledger.checkpoint`), started by the first write
    and stopped by `close`, never inside a commit. Write transactions of every process queue for the write lock in
    the kernel (`guard.ledger.write_queue`): taken in `begin_write`, let go in `end_write`."""

    lease_clock = WORKER_CLOCK  # one machine, one clock: leases judged by the worker's, fenced by token alone
    # julianday('now') is SQLite's clock (the OS clock of the host holding the file, read by the library, never a
    # client's idea of the time).
    clock_sql = "(julianday('now') - 2440587.5) * 86400.0"

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        if path is None:
            raise LedgerNotReady(f"{url}: not a SQLite URL", url=url)
        self.url = url
        self.path = path
        self.checkpointer = Checkpointer(str(path))
        self.writers = WriteQueue(path)
        self.log = LogSync(path)
        self._shared_until = 0.0  # until then, durable commits flush the log after the lock (see the class)
        # Connections (by id) a write left at busy_timeout=0. A write sets it once and leaves it: its own retries
        # wait for the lock, and inside a write transaction nothing else waits. A read outside one gets SQLite's
        # own busy handler back first (`begin_read`). Two statements fewer per write transaction.
        self._no_busy_wait: set[int] = set()

    def close(self) -> None:
        """Stop the checkpoint thread (waited for) and the write queue's waiter thread."""
        self.checkpointer.stop()
        self.writers.stop()
        self.log.close()

    def connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
                factory=QueuedConnection,
            )
            # WAL is a property of the file, set when it was created (database.upgrade). Switching it here would
            # need an exclusive lock: a connection opened while another writes would fail at once.
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.synchronous = "FULL"
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # reads; a write waits in `begin_write`
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: keeps index pages of a large ledger hot
            for pragma in CHECKPOINT_PRAGMAS:  # no commit checkpoints inline, short of the backstop
                conn.execute(pragma)
            self._no_busy_wait.discard(id(conn))  # a new connection under a closed one's id waits as set above
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"{self.url}: cannot open the ledger ({exc})", url=self.url) from exc
        return conn

    def begin_write(self, cur: sqlite3.Cursor, durable: bool = True, lock: str | None = None) -> None:  # noqa: ARG002 (covered by BEGIN IMMEDIATE, below)
        # `lock` needs nothing more: BEGIN IMMEDIATE already holds the one write lock of the file.
        # One connection serves both kinds: a second connection for the lazy commits would find its page cache
        # stale after every commit of the first (SQLite drops a connection's cache when another one wrote).
        self.checkpointer.ensure_running()
        conn_id = id(cur.connection)
        if conn_id not in self._no_busy_wait:  # each try fails at once; the pauses are ours (reads get SQLite's)
            cur.execute("PRAGMA busy_timeout=0")
            self._no_busy_wait.add(conn_id)
        conn = cast(QueuedConnection, cur.connection)  # made by `connect`
        now = time.monotonic()
        if self.writers.take(conn, BUSY_TIMEOUT_MS / 1000):
            self._shared_until = now + SHARED_FOR
        try:
            conn.flush_after = durable and now < self._shared_until
            synchronous = "FULL" if durable and not conn.flush_after else "NORMAL"
            if conn.synchronous != synchronous:
                cur.execute(f"PRAGMA synchronous={synchronous}")
                conn.synchronous = synchronous
            self._begin_immediate(cur)
        except BaseException:
            conn.flush_after = False
            self.writers.release(conn)
            raise

    def begin_read(self, cur: sqlite3.Cursor) -> None:
        """Before reads outside a write transaction: SQLite's own busy handler, if a write left it off."""
        conn_id = id(cur.connection)
        if conn_id in self._no_busy_wait:
            cur.execute(_BUSY_TIMEOUT)
            self._no_busy_wait.discard(conn_id)

    @staticmethod
    def _begin_immediate(cur: sqlite3.Cursor) -> None:
        """BEGIN IMMEDIATE, again after short jittered pauses while another connection writes, until it holds
        the write lock or the busy timeout has passed (then the last `database is locked` error is raised)."""
        deadline = 0.0
        pause = _RETRY_FIRST
        while True:
            try:
                cur.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                now = time.monotonic()
                if not deadline:
                    deadline = now + BUSY_TIMEOUT_MS / 1000
                elif now >= deadline:
                    raise
            time.sleep(pause * (0.5 + random.random()))  # noqa: S311 (jitter, not a secret)
            pause = min(pause * 2, _RETRY_CAP)

    def end_write(self, cur: sqlite3.Cursor) -> bool:
        conn = cast(QueuedConnection, cur.connection)
        self.writers.release(conn)  # the next writer goes at once
        flush_after, conn.flush_after = conn.flush_after, False
        return flush_after

    def flush(self) -> None:
        self.log.sync(self.log.written())

    def is_unavailable(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError)

    def lock(self, cur: sqlite3.Cursor, name: str) -> None:  # noqa: ARG002 (BEGIN IMMEDIATE already holds every name)
        return None

    def writers_now(self, cur: sqlite3.Cursor) -> tuple[str, ...] | None:  # noqa: ARG002 (the backend protocol's)
        # One writer at a time: an id is committed (or rolled back, and taken again) before the next is taken.
        return None

    def writers_ended(self, cur: sqlite3.Cursor, mark: tuple[str, ...]) -> bool:  # noqa: ARG002 (the backend protocol's)
        return True

    def clock(self, cur: sqlite3.Cursor) -> float:
        cur.execute(f"SELECT {self.clock_sql}")
        return float(cur.fetchone()[0])


def open_backend(url: str) -> Backend:
    """The backend for a URL, after checking the database is at the schema revision this code needs."""
    if url.startswith("sqlite:"):
        ensure_ready(url)
        return SqliteBackend(url)
    if url.split("+", 1)[0].split(":", 1)[0] in ("postgresql", "postgres"):
        from guard.ledger.backend_postgres import PostgresBackend

        backend = PostgresBackend(url)
        ensure_ready(url)
        return backend
    raise LedgerNotReady(
        f"{url}: not a ledger URL Guard knows; use sqlite:///path/to/guard.db or "
        "postgresql+psycopg://user@host:port/database",
        url=url,
    )


class Connections:
    """A pool of connections, each used by one transaction at a time, from any thread; opened on demand and
    kept for reuse. Threads that come and go (a framework's executor starts one per tool call) borrow an open
    connection instead of paying for a new one each time, and nothing is left open behind a finished thread.
    """

    def __init__(self, backend: Backend, limits: PoolLimits | None = None) -> None:
        self.backend = backend
        # A database server's pool is bounded (`guard.ledger.pool`): a slot per borrowed connection, taken on
        # borrow and given back with the connection; idle ones beyond `size` are closed. None: unbounded (SQLite).
        self.limits = limits
        self._slots = None if limits is None else threading.BoundedSemaphore(limits.most)
        # A server can drop an idle connection (a restart); a file cannot. Checked on borrow where it can happen.
        self._check_stale = bool(getattr(backend, "drops_idle_connections", False))
        self._begin_read: Any = getattr(backend, "begin_read", None)  # SQLite: the busy handler for reads
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def borrow(self) -> Any:
        """An open connection for one transaction; give it back with `give_back` (or `drop`). With limits, waits
        up to their timeout while every connection is in use, then raises LedgerBusy."""
        if self._closed:
            shown = shown_url(self.backend.url)
            raise LedgerUnavailable(f"{shown}: this ledger was closed", url=shown, database=shown)
        if self._slots is None or self.limits is None:
            return self._open()
        if not self._slots.acquire(timeout=self.limits.timeout):
            raise self._busy(self.limits)
        try:
            return self._open()
        except BaseException:
            self._slots.release()
            raise

    def _busy(self, limits: PoolLimits) -> LedgerBusy:
        shown = shown_url(self.backend.url)
        return LedgerBusy(
            f"{shown}: all {limits.most} connections of this process's ledger pool (size {limits.size}, overflow "
            f"{limits.overflow}) stayed in use for {limits.timeout:g}s, so nothing was recorded and the call was "
            "refused. Raise GUARD_DB_POOL_SIZE (Guard(db_pool_size=...)) within the server's max_connections, or "
            "run fewer threads per process",
            url=shown,
            database=shown,
            size=limits.size,
            overflow=limits.overflow,
            timeout=limits.timeout,
        )

    def _open(self) -> Any:
        try:
            conn = self._idle.get_nowait()
            while self._check_stale and conn.stale():
                # The server dropped it while it sat idle (a restart): so did it every other idle one.
                self.discard(conn)
                self.discard_idle()
                conn = self._idle.get_nowait()
            return conn
        except queue.Empty:
            conn = self.backend.connect()
            with self._lock:
                self._all.append(conn)
            return conn

    def give_back(self, conn: Any) -> None:
        try:
            if self._closed or getattr(conn, "in_transaction", False):
                # Closed meanwhile, or a rollback that failed: this connection is not reused.
                self.discard(conn)
            elif self.limits is not None and self._idle.qsize() >= self.limits.size:
                self.discard(conn)  # an overflow connection: closed once the load that opened it is gone
            else:
                self._idle.put(conn)
        finally:
            if self._slots is not None:
                self._slots.release()

    def drop(self, conn: Any) -> None:
        """Close a borrowed connection that must not be reused (its state is unknown), freeing its place."""
        try:
            self.discard(conn)
        finally:
            if self._slots is not None:
                self._slots.release()

    def discard_idle(self) -> None:
        """Close every idle connection (after one of them was found cut off from the server)."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            self.discard(conn)

    def discard(self, conn: Any) -> None:
        """Close a connection that must not be used again (its state is unknown)."""
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        with suppress(Exception):
            conn.close()

    @contextmanager
    def connection(self) -> Generator[Any]:
        """A connection of the pool for the length of the block (tests and maintenance; the ledger's own
        reads and writes borrow through `read` and `write`)."""
        conn = self.borrow()
        try:
            if self._begin_read is not None:
                cur = conn.cursor()
                self._begin_read(cur)
                cur.close()
            yield conn
        finally:
            self.give_back(conn)

    def write(self, durable: bool = True, lock: str | None = None) -> _WriteTx:
        """A write transaction (`with conns.write() as cur:`): committed when the block ends, rolled back if
        it raises; driver errors become LedgerUnavailable.

        `lock`: the name of what this transaction reads, checks and then writes on the strength of what it read
        (`run:<id>` for a run's calls and state, `approval:<id>`, `seal`); other transactions naming it wait, no
        one else does (see `Backend.begin_write`).

        Durable by default: the commit is on disk when the block ends. `durable=False` is for a record whose
        loss in a power cut costs nothing that cannot be redone exactly (the completion of a repeat-safe call:
        recovery finds it `started` and runs it again with the same key). It still reaches the database file
        before any later durable commit returns, so nothing recorded after it can survive without it.
        """
        return _WriteTx(self, durable, lock)

    @contextmanager
    def read(self) -> Generator[Any]:
        """A cursor for reads outside any write transaction."""
        conn = self.borrow()
        cur = conn.cursor()
        try:
            if self._begin_read is not None:
                self._begin_read(cur)
            yield cur
        except BaseException as exc:
            if self.backend.is_unavailable(exc):
                raise self.translate(exc) from exc
            raise
        finally:
            cur.close()
            self.give_back(conn)

    def translate(self, exc: BaseException) -> LedgerUnavailable:
        """A driver failure (`backend.is_unavailable`) as the ledger's own error, saying what to do."""
        return unavailable(self.backend.url, f"the ledger's database failed ({_first_line(exc)})")

    def rollback(self, cur: Any) -> None:
        with suppress(Exception):
            cur.execute("ROLLBACK")

    def close(self) -> None:
        """Close the idle connections now, and each borrowed one when its thread gives it back: closing a
        connection another thread is writing on would crash the process (SQLite frees it under the write).
        Borrowing afterwards raises LedgerUnavailable."""
        self._closed = True
        self.discard_idle()
        stop = getattr(self.backend, "close", None)  # a SQLite ledger's checkpoint thread
        if stop is not None:
            stop()


class _WriteTx:
    """The context manager behind `Connections.write` (a class: cheaper than a generator on the hot path)."""

    __slots__ = ("_conn", "_conns", "_cur", "_durable", "_lock")

    def __init__(self, conns: Connections, durable: bool, lock: str | None) -> None:
        self._conns = conns
        self._durable = durable
        self._lock = lock
        self._conn: Any = None
        self._cur: Any = None

    def __enter__(self) -> Any:
        for attempt in (1, 2):
            conn = self._conns.borrow()
            cur = conn.cursor()
            self._conn, self._cur = conn, cur
            try:
                self._conns.backend.begin_write(cur, self._durable, self._lock)
            except BaseException as exc:
                self._release()
                if attempt == 1 and getattr(conn, "broken", False):
                    # The server went away since this connection was last used (a restart): nothing of this
                    # transaction was sent. Every idle connection is as stale; start again on a new one.
                    self._conns.discard_idle()
                    continue
                if self._conns.backend.is_unavailable(exc):
                    raise self._conns.translate(exc) from exc
                raise
            break
        return self._cur

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        cur = self._cur
        try:
            if exc is not None:
                self._conns.rollback(cur)
                if self._conns.backend.is_unavailable(exc):
                    raise self._conns.translate(exc) from exc
                return
            try:
                cur.execute("COMMIT")
            except BaseException as commit_exc:
                self._conns.rollback(cur)
                if self._conns.backend.is_unavailable(commit_exc):
                    raise self._conns.translate(commit_exc) from commit_exc
                raise
        finally:
            flush = self._release()
        if flush:  # committed, not on disk yet: flushed now, after the write lock went
            try:
                self._conns.backend.flush()
            except OSError as flush_exc:
                raise unavailable(
                    self._conns.backend.url, f"the ledger's log could not be flushed to disk ({flush_exc})"
                ) from flush_exc

    def _release(self) -> bool:
        """Give the connection back; True when a commit waits for the backend's `flush`. One that cannot be put
        back is closed, never reused. (The commit itself stands either way.)"""
        cur, conn = self._cur, self._conn
        try:
            flush = self._conns.backend.end_write(cur)
        except Exception:  # noqa: BLE001 (whatever broke the connection, it is discarded, not reused)
            cur.close()
            self._conns.drop(conn)
            return True  # whether its commit waits for a flush is unknown: one more flush costs nothing wrong
        cur.close()
        self._conns.give_back(conn)
        return flush
