"""The PostgreSQL backend: psycopg 3, sync, the ledger's SQL text adapted to the server's placeholder style.

The ledger's modules write their SQL once, with `?` placeholders; this module alone knows PostgreSQL spells them
`%s`. Each statement's translation is made once and kept (a dict look-up per execute afterwards), and psycopg
prepares a statement on the server after a few executions, so the hot path pays neither twice.

Write transactions: READ COMMITTED, no ledger-wide lock, so writers of different runs commit side by side. What
keeps the ledger's promises without one: every change of an existing row is a compare-and-set (`UPDATE ... WHERE
state = ? AND lease_token = ?`, row count checked; the row lock the UPDATE takes holds until commit), every unique
key is claimed with `INSERT ... ON CONFLICT DO NOTHING` (a concurrent insert of the same key waits for the other's
commit, then finds it), a stream's chain head is a row moved by compare-and-set (locked when the head this process
remembers is stale) by the transaction that extends it, in the same statement as the events' insert
(`extend_chain_sql`, `guard.ledger.moves.append_events`), a team's stop-rule counter is a row locked from its check
to its count (`Ledger._stopped`), and a transaction that reads, checks, then writes on the strength of what it read
names a lock (`Connections.write(lock=...)`): a transaction-scoped advisory lock on a 64-bit key derived from the
name, taken in the same round trip as BEGIN, that only the transactions naming the same run, approval or seal wait
for.

Durability: `SET LOCAL synchronous_commit = off` for a transaction begun with `durable=False` (the completion of
a repeat-safe call), exactly where SQLite uses its lazy commit; every other commit waits for the server's WAL
flush.

Round trips: a round trip costs both sides more CPU than most of the ledger's statements do (a wake-up of each
process, the socket calls), so a transaction makes as few as its reads allow. BEGIN, its durability and its
named lock go with the first statement (`_Connection.run`); a transaction's last statement, when its writer says
so (`_Cursor.commit_with_next`: the offer of an auto-approved call, the completion), carries the COMMIT: it is
sent strict, and when it would not write everything it was given (a taken key, a stream head another process
moved) it fails, the transaction is rolled back and its writer makes it again without folding
(`guard.ledger.backend.CommitRefused`, `_Connection.fold`). A guarded auto-approved call is 3 round trips: the
offer's BEGIN, lock and gate read, then its call row, head, event and COMMIT; the completion's BEGIN, durability
and one statement (the compare-and-set on the row as this process inserted it, its head and event: a call it
started, `guard.ledger.inflight._complete_as_written`) with the COMMIT. Statements with parameters, BEGIN's and
the durability's are prepared once per connection and sent through libpq (`guard.ledger.pg_wire`).
"""

from __future__ import annotations

import hashlib
import select
from collections.abc import Iterable, Sequence
from typing import Any

from guard.errors import LedgerNotReady
from guard.ledger.backend import CommitRefused, unavailable
from guard.ledger.database import shown_url
from guard.ledger.lease_clock import DATABASE_CLOCK
from guard.ledger.moves import EVENT_COLUMNS
from guard.ledger.pg_wire import Wire, dollar_sql

__all__ = ["PostgresBackend", "lock_key"]

# READ COMMITTED whatever the server's default_transaction_isolation says: the compare-and-sets above rely on an
# UPDATE seeing the row as the last committed writer left it, which SERIALIZABLE would turn into aborts.
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
_BEGIN_B = _BEGIN.encode()
_LAZY_B = b"SET LOCAL synchronous_commit = off"
_LOCK_B = b"SELECT pg_advisory_xact_lock($1)"  # one text for every key
_ENDS = frozenset({"COMMIT", "ROLLBACK"})
_TUPLES_OK = 2  # libpq's PGRES_TUPLES_OK

CONNECT_TIMEOUT = 5  # seconds: how long opening a connection may take before the ledger is called unavailable
# A ledger transaction lasts milliseconds. One left open (a worker stopped or hung inside it) holds its run's and its
# stream's locks, and the notifier's reading of every event after it; the server ends it after this long (rolled
# back: nothing of it was ever committed), and the worker, once it runs again, finds its connection gone and says
# the ledger was unavailable. A URL that sets `idle_in_transaction_session_timeout` itself keeps its own.
IDLE_IN_TRANSACTION = "60s"
_translated: dict[str, str] = {}


def lock_key(name: str) -> int:
    """The advisory lock key of a lock name: the first 8 bytes of its BLAKE2b, as PostgreSQL's signed bigint. Two
    names sharing a key (about 1 in 2**64) only make their transactions wait for each other."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def to_server_sql(sql: str) -> str:
    """The ledger's `?` placeholders as psycopg's `%s` (a literal `%` doubled), translated once per text."""
    done = _translated.get(sql)
    if done is None:
        done = sql.replace("%", "%%").replace("?", "%s")
        _translated[sql] = done
    return done


# An event's values as they are sent: a VALUES list inside a SELECT needs its columns' types said (an untyped
# parameter there would be taken for text), the column's own type or one that converts to it on insert.
_EVENT_TYPES = tuple({"at": "float8", "seq": "int"}.get(c, "text") for c in EVENT_COLUMNS)
_EXTEND_CHAIN: dict[tuple[int, str | None, bool, bool], str] = {}


def extend_chain_sql(n: int, lead: str | None = None, strict: bool = False, fresh: bool = False) -> str:
    """One statement (a data-modifying CTE) that makes the `lead` insert if any (ledger SQL text, no RETURNING) and,
    only if it wrote its row, moves a stream's head by compare-and-set and appends `n` events only if it moved: what
    `guard.ledger.moves._extend` does in up to three statements, in one round trip. Its one row counts the lead's
    rows (1 when there is none) and the head's moves (1 or 0); nothing is written unless both are 1.

    `strict`: the statement fails (division_by_zero, SQLSTATE 22012), undoing all it did, unless both are 1; its
    row is then (1, 1). What lets the COMMIT ride in its round trip (`_Cursor.extend_chain`).

    `fresh`: the stream is new (its run was inserted in this transaction): its head row is made, at the new length
    and head, instead of moved; it counts as not moved when the row exists already."""
    sql = _EXTEND_CHAIN.get((n, lead, strict, fresh))
    if sql is None:
        row = "(" + ", ".join(f"%s::{t}" for t in _EVENT_TYPES) + ")"
        first = "" if lead is None else f"lead AS ({to_server_sql(lead)} RETURNING 1), "
        after = "" if lead is None else " AND EXISTS (SELECT FROM lead)"
        move = (
            # The old length and head are those of a stream with no event (0 and GENESIS, as `move` gives them).
            "INSERT INTO stream_heads (length, head, stream) SELECT %s::int, %s::text, %s::text "
            f"WHERE %s::int = 0 AND %s::text IS NOT NULL{after} ON CONFLICT (stream) DO NOTHING RETURNING 1"
            if fresh
            else "UPDATE stream_heads SET length = %s, head = %s WHERE stream = %s AND length = %s "
            f"AND head = %s{after} RETURNING 1"
        )
        sql = (
            f"WITH {first}moved AS ({move}), appended AS (INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"SELECT * FROM (VALUES {', '.join([row] * n)}) AS v WHERE EXISTS (SELECT FROM moved)) "
        )
        counts = [*(["(SELECT count(*) FROM lead)"] if lead else []), "(SELECT count(*) FROM moved)"]
        if strict:  # a count of 0 divides by zero at run time (a subquery: never folded into a constant)
            counts = [f"1 / {c}" for c in counts]
        sql += "SELECT " + ", ".join(counts if lead else ["1", *counts])
        _EXTEND_CHAIN[(n, lead, strict, fresh)] = sql
    return sql


class _Cursor:
    """A psycopg cursor that takes the ledger's SQL text as written.

    A statement with parameters goes through libpq (`guard.ledger.pg_wire`: prepared once per connection, its
    parameters dumped as psycopg's cursor dumps them); one without, and `executemany`, through psycopg's cursor.
    A write transaction's BEGIN (with its durability and named lock) is sent with its first statement, in one
    round trip (`_Connection.begin`); its COMMIT or ROLLBACK is not sent at all when no statement was, nor when
    it rode with the last statement (`commit_with_next`)."""

    __slots__ = ("_at", "_cur", "_owner", "_res", "_rows", "_streams")

    def __init__(self, cur: Any, owner: _Connection, streams: bool = False) -> None:
        self._cur = cur
        self._owner = owner
        self._streams = streams  # a server-side cursor (`_Connection.streaming_cursor`): psycopg's, always
        self._res: Any = None  # the last statement's result when it went through libpq
        self._rows: list[Any] = []
        self._at = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        owner = self._owner
        owner.last = False  # only the statement right after `commit_with_next` carries the COMMIT
        if params and not self._streams:
            self._took(owner.run(dollar_sql(to_server_sql(sql)), params))
        elif sql in _ENDS:
            self._took(owner.end(sql))
        else:
            if owner.pending is not None:
                self._took(owner.run(None, ()))
            self._res = None
            if params:  # a server-side cursor: its rows come as they are fetched
                self._cur.execute(to_server_sql(sql), params)
            else:
                # Without parameters psycopg sends the text as it is (no placeholders, `%` stays single), in the
                # simple protocol: maintenance texts of several statements work.
                self._cur.execute(sql)
        return self

    def _took(self, res: Any) -> None:
        self._res = res
        self._rows = [] if res is None else self._owner.wire.rows(res)
        self._at = 0

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._owner.last = False
        if self._owner.pending is not None:
            self._took(self._owner.run(None, ()))
        self._res = None
        self._cur.executemany(to_server_sql(sql), list(rows))

    def extend_chain(
        self,
        move: Sequence[Any],
        rows: Sequence[Any],
        n: int,
        lead: tuple[str, Sequence[Any]] | None = None,
        fresh: bool = False,
    ) -> tuple[bool, bool]:
        """`guard.ledger.moves._extend` in one statement (`extend_chain_sql`): (the lead wrote its row or there was
        none, the head moved, or was made for a `fresh` stream, and the `n` events, `rows` their values flattened,
        were inserted)."""
        lead_sql, params = (None, (*move, *rows)) if lead is None else (lead[0], (*lead[1], *move, *rows))
        owner = self._owner
        # The transaction's last statement is strict, with the COMMIT in its round trip. When it would not write it
        # all (a taken key, a stale head) it fails, the transaction is rolled back (CommitRefused), and its writer
        # makes it again without folding, where this statement runs plain and says what it found.
        strict, owner.last = owner.last, False
        sql = dollar_sql(extend_chain_sql(n, lead_sql, strict=strict, fresh=fresh))
        if strict:
            owner.fold(sql, params)
            return True, True
        self._took(owner.run(sql, params))
        wrote, moved = self.fetchone()
        return wrote == 1, moved == 1

    def begin(self, durable: bool, lock: str | None) -> None:
        """A write transaction on this cursor's connection, sent with its first statement (`_Connection.run`)."""
        self._owner.begin(durable, lock)

    def commit_with_next(self) -> None:
        """The transaction's next statement is its last (`guard.ledger.moves` appending its events): commit in the
        same round trip when that statement writes everything it is given (`_Connection.fold`). The block's own
        COMMIT then has nothing left to do."""
        self._owner.last = True

    def fetchone(self) -> Any:
        if self._res is None:
            return self._cur.fetchone()
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        if self._res is None:
            return self._cur.fetchall()
        rest, self._at = self._rows[self._at :], len(self._rows)
        return rest

    def fetchmany(self, size: int) -> list[Any]:
        if self._res is None:
            return self._cur.fetchmany(size)
        some = self._rows[self._at : self._at + size]
        self._at += len(some)
        return some

    def __iter__(self) -> Any:
        if self._res is None:
            return iter(self._cur)
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        if self._res is None:
            return int(self._cur.rowcount)
        if self._res.status == _TUPLES_OK:
            return len(self._rows)
        done = self._res.command_tuples
        return -1 if done is None else int(done)

    @property
    def description(self) -> Any:
        if self._res is None:
            return self._cur.description
        res = self._res
        if not res.nfields:
            return None
        return [(res.fname(i).decode(), res.ftype(i), None, None, None, None, None) for i in range(res.nfields)]

    def close(self) -> None:
        self._cur.close()


class _Connection:
    """A psycopg connection in autocommit mode (the ledger's transactions are explicit)."""

    __slots__ = ("_conn", "_int8", "_serial", "committed", "last", "pending", "wire")

    def __init__(self, conn: Any) -> None:
        from psycopg.types.numeric import Int8

        self._int8 = Int8
        self._conn = conn
        self._serial = 0
        self.wire = Wire(conn)
        # A write transaction begun here and not yet sent: (durable, the named lock's key or None).
        self.pending: tuple[bool, int | None] | None = None
        self.last = False  # the next statement is the transaction's last (`_Cursor.commit_with_next`)
        self.committed = False  # the transaction committed with its last statement (`fold`)

    def fold(self, sql: bytes, params: Sequence[Any]) -> None:
        """A strict last statement (`extend_chain_sql(strict=True)`) and the COMMIT, in one round trip: all written
        and committed, as durable as the transaction was begun. When it refuses (SQLSTATE 22012) the transaction is
        aborted (the COMMIT was not run) and CommitRefused is raised; the write block's exit rolls it back.

        No savepoint to fall back to within the transaction: a savepoint is two more statements and a
        subtransaction in every call, for a refusal that comes only when another process wrote the same run or key,
        and then the writer makes the whole (uncommitted) transaction again."""
        try:
            self.wire.first(self._begun(), sql, params, [b"COMMIT"])
        except self.wire.refused as exc:
            raise CommitRefused from exc
        self.committed = True

    def begin(self, durable: bool, lock: str | None) -> None:
        """Begin a write transaction with its first statement (`run`): nothing is sent yet."""
        self.pending = (durable, None if lock is None else lock_key(lock))

    def run(self, sql: bytes | None, params: Sequence[Any]) -> Any:
        """A statement (`$n` placeholders) through libpq; after a `begin`, sent with the pending BEGIN, the commit's
        durability (`SET LOCAL synchronous_commit = off` when not durable) and the named lock in one round trip
        (libpq's pipeline mode: each runs after the one before, as if sent one by one; the first error stops the
        rest and is raised, the transaction then aborted or never begun, and the caller rolls back). Every text
        but BEGIN's is the same on every call, prepared once per connection."""
        if self.pending is None:
            return None if sql is None else self.wire.run(sql, params)
        return self.wire.first(self._begun(), sql, params)

    def _begun(self) -> list[tuple[bytes, tuple[Any, ...]]]:
        """The statements that begin the pending transaction (none when it was begun on the server already)."""
        pending, self.pending = self.pending, None
        if pending is None:
            return []
        durable, key = pending
        begin: list[tuple[bytes, tuple[Any, ...]]] = [(_BEGIN_B, ())]
        if not durable:
            begin.append((_LAZY_B, ()))
        if key is not None:
            begin.append((_LOCK_B, (self._int8(key),)))  # always int8: one prepared text and type
        return begin

    def end(self, sql: str) -> Any:
        """COMMIT or ROLLBACK; nothing sent when the transaction sent nothing (no transaction on the server) or
        committed with its last statement (`fold`)."""
        self.last = False
        if self.pending is not None or self.committed:
            self.pending = None
            self.committed = False
            return None
        return self.wire.plain(sql.encode())

    def cursor(self) -> _Cursor:
        return _Cursor(self._conn.cursor(), self)

    def streaming_cursor(self) -> _Cursor:
        """A server-side cursor (inside an explicit transaction): its rows come in batches as they are fetched,
        not all at once into memory (psycopg's default cursor holds the whole result). For `guard ledger verify`."""
        if self.pending is not None:
            self.run(None, ())
        self._serial += 1
        return _Cursor(self._conn.cursor(name=f"guard_stream_{self._serial}"), self, streams=True)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        """One statement on a new cursor, as `sqlite3.Connection.execute` does (maintenance and tests)."""
        return self.cursor().execute(sql, params)

    def stale(self) -> bool:
        """True when the server closed this idle connection (a restart, an idle timeout): its socket is readable
        although no query is under way. A select with no wait (a syscall, no round trip)."""
        if self._conn.closed:
            return True
        try:
            readable, _, _ = select.select([self._conn.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    @property
    def broken(self) -> bool:
        """True once the connection was found cut off from the server (psycopg closes it then)."""
        return bool(self._conn.broken or self._conn.closed)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.pending is not None or self._conn.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self._conn.close()


def conninfo(url: str) -> str:
    """A libpq connection string from a SQLAlchemy-style URL (`postgresql+psycopg://...` or `postgresql://...`)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise LedgerNotReady(
            f"{shown_url(url)}: not a PostgreSQL URL (postgresql+psycopg://user@host:port/db)", url=shown_url(url)
        )
    return f"postgresql://{rest}"


# Who holds `events` open for insert now (the lock an INSERT takes, kept to the end of its transaction).
_EVENT_WRITERS = (
    "SELECT array_agg(DISTINCT virtualtransaction) FROM pg_locks WHERE locktype = 'relation' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND relation = 'events'::regclass AND mode = 'RowExclusiveLock' AND granted"
)
_EVENT_WRITERS_LEFT = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'relation' AND relation = 'events'::regclass "
    "AND mode = 'RowExclusiveLock' AND virtualtransaction = ANY(?))"
)


class PostgresBackend:
    """A PostgreSQL database holding the ledger, reached with psycopg 3."""

    # The pool checks a connection on borrow (`_Connection.stale`): a restarted server dropped it.
    drops_idle_connections = True
    # Workers on many hosts: every lease is judged by the server's clock_timestamp() (guard.ledger.lease_clock).
    lease_clock = DATABASE_CLOCK
    clock_sql = DATABASE_CLOCK.now_sql  # clock_timestamp(): the server's now when read, not its transaction's start

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise LedgerNotReady(
                f"{shown_url(url)}: PostgreSQL needs psycopg: pip install 'guard-middleware[postgres]'",
                url=shown_url(url),
            ) from exc
        self._psycopg = psycopg
        self.url = url
        self._conninfo = conninfo(url)
        self._timeout: dict[str, Any] = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT}
        self._idle_limit = "idle_in_transaction_session_timeout" not in url

    def connect(self) -> _Connection:
        """A new connection, or LedgerUnavailable saying the server cannot be reached and what to do (within
        `connect_timeout` seconds, 5 unless the URL says otherwise: a host that does not answer is refused, not
        waited on)."""
        try:
            conn = self._psycopg.connect(self._conninfo, autocommit=True, **self._timeout)
            if self._idle_limit:
                conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'")
        except self._psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise unavailable(self.url, f"cannot connect to the ledger's database ({reason})") from exc
        return _Connection(conn)

    def begin_write(self, cur: _Cursor, durable: bool = True, lock: str | None = None) -> None:
        cur.begin(durable, lock)

    def end_write(self, cur: _Cursor) -> bool:  # noqa: ARG002 (the backend protocol's)
        # SET LOCAL ends with its transaction: nothing to put back. A durable COMMIT returned once the server had
        # flushed its WAL: nothing waits for `flush`.
        return False

    def flush(self) -> None:  # pragma: no cover - never asked for (end_write says False)
        return None

    def is_unavailable(self, exc: BaseException) -> bool:
        errors = self._psycopg.errors
        return isinstance(exc, self._psycopg.Error) and not isinstance(exc, errors.IntegrityError)

    def lock(self, cur: _Cursor, name: str) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))

    def clock(self, cur: _Cursor) -> float:
        cur.execute(f"SELECT {self.clock_sql}")
        return float(cur.fetchone()[0])

    def writers_now(self, cur: _Cursor) -> tuple[str, ...] | None:
        # The transactions that inserted into this database's `events` and have not ended: each holds its table
        # lock until it commits or rolls back, so any id taken and not yet visible belongs to one of them. Only
        # they count: a long write transaction of another application (another database of the cluster, or a
        # table of ours no event is in) never holds the notifier back. Virtual transaction ids are never reused.
        cur.execute(_EVENT_WRITERS)
        (held,) = cur.fetchone()
        return tuple(held) if held else None

    def writers_ended(self, cur: _Cursor, mark: tuple[str, ...]) -> bool:
        cur.execute(_EVENT_WRITERS_LEFT, (list(mark),))
        return not cur.fetchone()[0]
