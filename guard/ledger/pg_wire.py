"""The ledger's statements on PostgreSQL straight through libpq (psycopg's `pq` layer), for the hot path.

psycopg's cursor spends more of a worker's CPU per statement than the statement costs the server (its Python
layers: query conversion, the prepared-statement bookkeeping, generators waiting on the socket). Here a statement
with parameters is prepared once per connection under a name of its own (`g<n>`, at most `_KEPT` per connection,
the least recently used deallocated), then executed with `PQexecPrepared`, which waits in C with the GIL released.
Parameters are dumped and rows loaded by psycopg's own `Transformer`, so the values sent and read back are
exactly those psycopg's cursor would send and return (the row digests depend on that).

A write transaction's BEGIN, its durability (`SET LOCAL synchronous_commit = off`), its named lock and its first
statement go in one round trip (`first`, libpq's pipeline mode), each prepared once per connection too (BEGIN's
text is parsed once, the lock's planned once): the server runs them in order as if sent one by one, and the first
error stops the rest.

Errors are psycopg's (`psycopg.errors.error_from_result`, the class of the SQLSTATE): callers handle them as they
handle the cursor's. A connection that breaks under a statement raises psycopg's OperationalError and reads as
`broken` from then on (libpq's status, which psycopg reads too).
"""

from __future__ import annotations

import re
import select
from collections.abc import Sequence
from typing import Any

__all__ = ["Wire", "dollar_sql"]

_KEPT = 128  # prepared statements per connection: the ledger's hot texts number a few dozen
_dollars: dict[str, bytes] = {}
_PLACEHOLDER = re.compile(r"%%|%s")
_NOTHING: tuple[Sequence[Any], tuple[int, ...], Sequence[Any]] = ((), (), ())  # a statement without parameters


def dollar_sql(sql: str) -> bytes:
    """A text in psycopg's placeholder style (`%s`, a literal `%` doubled) in PostgreSQL's (`$1, $2, ...`),
    translated once per text."""
    done = _dollars.get(sql)
    if done is None:
        count = iter(range(1, sql.count("%s") + 1))
        done = _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(count)}", sql).encode()
        _dollars[sql] = done
    return done


class Wire:
    """One psycopg connection's statements sent through libpq. Used by one thread at a time (the pool's)."""

    __slots__ = (
        "_auto",
        "_bad",
        "_conn",
        "_errors",
        "_exec",
        "_failed",
        "_names",
        "_pg",
        "_psycopg",
        "_serial",
        "_tx",
        "refused",
    )

    def __init__(self, conn: Any) -> None:
        import psycopg
        from psycopg import pq
        from psycopg.adapt import PyFormat, Transformer

        self._psycopg = psycopg
        self._exec = pq.ExecStatus
        self._bad = pq.ConnStatus.BAD
        self._failed = pq.TransactionStatus.INERROR
        self.refused: type[Exception] = psycopg.errors.DivisionByZero  # a strict statement that would not write all
        self._conn = conn
        self._pg = conn.pgconn
        self._tx = Transformer(conn)
        self._auto = PyFormat.AUTO
        self._names: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._serial = 0
        self._errors = conn.info.encoding

    def run(self, sql: bytes, params: Sequence[Any]) -> Any:
        """Execute a prepared statement (preparing it on first use); its result (TUPLES_OK or COMMAND_OK)."""
        values, types, formats = self._dump(params)
        name = self._prepared(sql, types)
        return self._check(self._pg.exec_prepared(name, values, formats))

    def plain(self, sql: bytes) -> Any:
        """A statement without parameters (COMMIT, ROLLBACK)."""
        return self._check(self._pg.exec_(sql))

    def first(
        self,
        before: Sequence[tuple[bytes, Sequence[Any]]],
        sql: bytes | None,
        params: Sequence[Any],
        after: Sequence[bytes] = (),
    ) -> Any:
        """The `before` statements (text, parameters), then `sql` if any, then the `after` statements, in one round
        trip, each prepared once per connection like `run`'s; the result of `sql` (else of the last statement). The
        first error is raised: the statements after it were not run."""
        statements = [*before, *([] if sql is None else [(sql, params)]), *((text, ()) for text in after)]
        pg = self._pg
        fresh: list[tuple[int, tuple[bytes, tuple[int, ...]], bytes]] = []  # (its result's place, key, name)
        places: list[int] = []  # where each statement's own result is among the results
        pg.enter_pipeline_mode()
        try:
            for text, args in statements:
                values, types, formats = self._dump(args) if args else _NOTHING
                key = (text, types)
                name = self._names.get(key)
                if name is None:
                    name = self._name()
                    pg.send_prepare(name, text, types)
                    fresh.append((len(places) + len(fresh), key, name))
                pg.send_query_prepared(name, values, formats)
                places.append(len(places) + len(fresh))
            pg.pipeline_sync()
            results = self._collect(len(places) + len(fresh))
        finally:
            if pg.pipeline_status:
                pg.exit_pipeline_mode()
        for place, key, name in fresh:
            if results[place].status == self._exec.COMMAND_OK:
                self._keep(key, name)  # prepared, whatever came after
        failed = next((r for r in results if r.status == self._exec.FATAL_ERROR), None)
        if failed is not None:
            raise self._psycopg.errors.error_from_result(failed, encoding=self._errors)
        if any(r.status == self._exec.PIPELINE_ABORTED for r in results):  # pragma: no cover - an error came first
            raise self._psycopg.OperationalError("the statements of this transaction were not run")
        return results[places[len(before)] if sql is not None else places[-1]]

    def _collect(self, expected: int) -> list[Any]:
        """The result of each query of the pipeline, up to its sync (libpq ends each query's results with None).
        Waits for the socket in `select`, which lets go of the GIL (libpq's own wait in PQgetResult would hold it
        for as long as the server takes, a durable COMMIT's flush included, and stop every other thread)."""
        pg = self._pg
        results: list[Any] = []
        fd = pg.socket
        while pg.flush():  # what the socket did not take yet (a large argument)
            select.select([], [fd], [])
        while True:
            if pg.is_busy():
                select.select([fd], [], [])
                pg.consume_input()
                continue
            res = pg.get_result()
            if res is None:
                if pg.status == self._bad:  # the server went away under the pipeline
                    raise self._psycopg.OperationalError(_message(pg))
                continue
            if res.status == self._exec.PIPELINE_SYNC:
                if len(results) != expected:  # pragma: no cover - libpq answers each query
                    raise self._psycopg.OperationalError("the server answered fewer statements than were sent")
                return results
            results.append(res)

    def _dump(self, params: Sequence[Any]) -> tuple[Sequence[Any], tuple[int, ...], Sequence[Any]]:
        tx = self._tx
        values = tx.dump_sequence(params, [self._auto] * len(params))
        return values, tuple(tx.types or ()), list(tx.formats or ())

    def _prepared(self, sql: bytes, types: tuple[int, ...]) -> bytes:
        key = (sql, types)
        name = self._names.get(key)
        if name is None:
            name = self._name()
            self._check(self._pg.prepare(name, sql, types))
            self._keep(key, name)
        return name

    def _name(self) -> bytes:
        self._serial += 1
        return f"g{self._serial}".encode()

    def _keep(self, key: tuple[bytes, tuple[int, ...]], name: bytes) -> None:
        if len(self._names) >= _KEPT:
            oldest = self._names.pop(next(iter(self._names)))
            if self._pg.transaction_status != self._failed:  # an aborted transaction runs nothing till it ends
                self._check(self._pg.exec_(b"DEALLOCATE " + oldest))
        self._names[key] = name

    def _check(self, res: Any) -> Any:
        """The result if it succeeded; the server's error as psycopg's exception otherwise."""
        status = None if res is None else res.status
        if status == self._exec.TUPLES_OK or status == self._exec.COMMAND_OK:
            return res
        if status == self._exec.FATAL_ERROR and res is not None:
            raise self._psycopg.errors.error_from_result(res, encoding=self._errors)
        raise self._psycopg.OperationalError(_message(self._pg))

    def rows(self, res: Any) -> list[tuple[Any, ...]]:
        """The rows of a result as psycopg's cursor returns them."""
        n = res.ntuples
        if not n:
            return []
        tx = self._tx
        tx.set_pgresult(res)
        return tx.load_rows(0, n, tuple)


def _message(pg: Any) -> str:
    text = pg.error_message
    return (text.decode(errors="replace") if isinstance(text, bytes) else str(text)).strip() or "connection lost"
