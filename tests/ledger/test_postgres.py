"""The ledger on a real PostgreSQL server: what only a server can do to it (restart under a running worker), and
the URL forms it takes. Everything else runs on both backends through the parametrised `ledger` fixture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pg_cluster import PgCluster

from guard import Guard
from guard.errors import LedgerNotReady, LedgerUnavailable
from guard.ledger import Ledger
from guard.ledger.backend import Connections
from guard.ledger.backend_postgres import conninfo, to_server_sql

POLICY = """\
team: pgtest
reviewers: {alice: [finance]}
rules:
  - name: notes
    tools: [crm.add_note]
    class: compensable
"""


@pytest.fixture
def pg_guard(pg_cluster: PgCluster, tmp_path: Path) -> Any:
    (tmp_path / "pgtest.yaml").write_text(POLICY)
    url = pg_cluster.create_database(f"restart_{tmp_path.name}".lower(), template="guard_template")
    guard = Guard(db=url, policies=tmp_path)
    try:
        yield guard
    finally:
        guard.close()


def test_a_worker_whose_server_restarted_reconnects_by_itself_and_runs_the_next_call_once(
    pg_guard: Guard, pg_cluster: PgCluster
) -> None:
    effects: list[str] = []

    @pg_guard.tool(name="crm.add_note")
    def add_note(text: str) -> dict[str, str]:
        effects.append(text)
        return {"note": text}

    with pg_guard.run("pgtest", source_event_id="before"):
        add_note(text="before")
    pg_cluster.restart()  # every pooled connection of this worker is now cut off
    with pg_guard.run("pgtest", source_event_id="after") as run:
        add_note(text="after")
    assert effects == ["before", "after"]
    calls = pg_guard.ledger.calls_of(run.run_id)
    assert [(c.tool, c.state) for c in calls] == [("crm.add_note", "completed")]


def test_reads_after_a_server_restart_answer_at_once_on_new_connections(pg_cluster: PgCluster) -> None:
    ledger = Ledger(pg_cluster.create_database("reads_after_restart", template="guard_template"))
    try:
        with ledger.conns.connection() as first, ledger.conns.connection() as second:
            assert first is not second  # two idle connections in the pool, both about to go stale
        ledger.list_runs(limit=1)
        pg_cluster.restart()
        assert ledger.list_runs(limit=1) == []  # no LedgerUnavailable: the stale ones were dropped on borrow
        with ledger.conns.connection() as conn:
            assert conn not in (first, second)
    finally:
        ledger.close()


def test_a_database_the_server_does_not_hold_is_refused_at_start_by_name(pg_cluster: PgCluster, tmp_path: Path) -> None:
    (tmp_path / "pgtest.yaml").write_text(POLICY)
    with pytest.raises(LedgerUnavailable) as failure:
        Guard(db=pg_cluster.url("no_such_database"), policies=tmp_path)
    assert "no_such_database" in str(failure.value)


def test_the_ledger_sql_is_written_once_and_spelled_for_the_server_by_the_backend() -> None:
    assert to_server_sql("SELECT a FROM t WHERE b = ? AND c LIKE 'x%'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%'"
    )


@pytest.mark.parametrize("url", ["mysql://h/db", "postgresql", "sqlite+psycopg://h/db"])
def test_a_url_that_is_not_postgresql_is_refused_by_the_postgres_backend(url: str) -> None:
    with pytest.raises(LedgerNotReady):
        conninfo(url)


class _ShowingCursor:
    """A ledger cursor that records each statement with the server's synchronous_commit in its transaction."""

    def __init__(self, inner: Any, trace: list[tuple[str, str, tuple[Any, ...]]]) -> None:
        self.inner: Any = inner
        self.trace = trace
        self.mode = "on"

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.trace.append((self.mode, sql, tuple(params)))
        return self.inner.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _ShowingBackend:
    """The PostgreSQL backend, asking the server after every BEGIN whether this transaction waits for the disk."""

    def __init__(self, inner: Any) -> None:
        self.inner: Any = inner
        self.url: str = inner.url
        self.drops_idle_connections = True
        self.lease_clock = inner.lease_clock
        self.trace: list[tuple[str, str, tuple[Any, ...]]] = []

    def connect(self) -> Any:
        conn = self.inner.connect()
        trace = self.trace

        class _Conn:
            in_transaction = property(lambda _: conn.in_transaction)
            broken = property(lambda _: conn.broken)

            def stale(self) -> bool:
                return bool(conn.stale())

            def cursor(self) -> _ShowingCursor:
                return _ShowingCursor(conn.cursor(), trace)

            def close(self) -> None:
                conn.close()

        return _Conn()

    def begin_write(self, cur: _ShowingCursor, durable: bool = True, lock: str | None = None) -> None:
        self.inner.begin_write(cur.inner, durable, lock)
        cur.inner.execute("SHOW synchronous_commit")
        cur.mode = cur.inner.fetchone()[0]

    def end_write(self, cur: _ShowingCursor, durable: bool = True) -> None:
        self.inner.end_write(cur.inner, durable)

    def is_unavailable(self, exc: BaseException) -> bool:
        return bool(self.inner.is_unavailable(exc))

    def clock(self, cur: _ShowingCursor) -> float:
        return float(self.inner.clock(cur.inner))

    def lock(self, cur: _ShowingCursor, name: str) -> None:
        self.inner.lock(cur.inner, name)


POLICY_CLASSES = """\
team: pgtest
rules:
  - {name: reads, tools: [crm.find], class: read}
  - {name: upserts, tools: [crm.upsert], class: idempotent}
  - {name: invoices, tools: [billing.invoice], class: compensable}
"""


def test_only_a_repeat_safe_completion_commits_with_synchronous_commit_off(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    (tmp_path / "pgtest.yaml").write_text(POLICY_CLASSES)
    guard = Guard(
        db=pg_cluster.create_database("durability", template="guard_template"), policies=tmp_path, log_level="warning"
    )
    try:
        backend = _ShowingBackend(guard.ledger.conns.backend)
        guard.ledger.conns.close()  # a closed pool lends no more: a new one opens through the wrapper
        guard.ledger.conns = Connections(backend)

        def answer(x: int) -> dict[str, int]:
            return {"x": x}

        tools = {name: guard.tool(answer, name=name) for name in ("crm.find", "crm.upsert", "billing.invoice")}
        with guard.run("pgtest") as run:
            for tool in tools.values():
                tool(x=1)
        ids = {c.tool: c.call_id for c in guard.ledger.calls_of(run.run_id)}
        modes: dict[str, set[str]] = {name: set() for name in ids}
        for mode, sql, params in backend.trace:
            if sql.startswith("UPDATE calls SET state = ?") and params[0] == "completed":
                for name, call_id in ids.items():
                    if call_id in params:
                        modes[name].add(mode)
        assert modes == {"crm.find": {"off"}, "crm.upsert": {"off"}, "billing.invoice": {"on"}}
        # Nothing but those completions (and their events) ran in a transaction that does not wait for the disk.
        lazy = [sql for mode, sql, _ in backend.trace if mode == "off"]
        assert lazy and all(
            sql.startswith(
                (
                    "UPDATE calls SET state = ?",
                    "INSERT INTO stream_heads",
                    "UPDATE stream_heads",
                    "INSERT INTO events",
                    "COMMIT",
                )
            )
            for sql in lazy
        ), lazy
    finally:
        guard.close()
