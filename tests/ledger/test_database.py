"""Where the ledger lives: creation on first use, revision checks, durability settings, unique keys."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from ledger_support import AGENT, TEAM, request
from pg_cluster import PgCluster

import guard.ledger.database
from guard.errors import LedgerNotReady, LedgerUnavailable
from guard.ledger import HEAD_REVISION, CallState, Ledger, current_revision, upgrade
from guard.ledger.backend import BUSY_TIMEOUT_MS
from guard.ledger.tables import metadata

MIGRATIONS = Path(guard.ledger.database.__file__).with_name("migrations")
TABLES = {"runs", "calls", "events", "approvals", "approval_decisions", "manual_actions", "pauses"}


def table_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as raw:
        return {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as raw:
        return raw.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


def test_a_new_sqlite_file_is_created_and_migrated_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "guard.db"
    ledger = Ledger(f"sqlite:///{path}")
    try:
        assert ledger.open_run("r", TEAM, actor=AGENT).state == "running"
    finally:
        ledger.close()
    assert table_names(path) >= TABLES
    assert current_revision(f"sqlite:///{path}") == HEAD_REVISION


def test_a_database_stamped_at_another_revision_is_refused_with_the_upgrade_command(db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '0000_older'")
    with pytest.raises(LedgerNotReady) as info:
        Ledger(f"sqlite:///{db_path}")
    assert "guard db upgrade" in str(info.value)
    assert info.value.revision == "0000_older"
    assert info.value.needed == HEAD_REVISION


def test_a_sqlite_file_with_unrelated_tables_is_refused_with_the_upgrade_command(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        raw.execute("INSERT INTO customers (name) VALUES ('ada')")
    with pytest.raises(LedgerNotReady) as info:
        Ledger(f"sqlite:///{path}")
    assert "guard db upgrade" in str(info.value)
    assert info.value.revision is None
    assert table_names(path) == {"customers"}  # refused, not silently migrated


def test_a_file_that_is_not_a_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    with pytest.raises(LedgerNotReady, match="not a SQLite database"):
        Ledger(f"sqlite:///{path}")
    assert path.read_bytes().startswith(b"these are not")


def test_head_revision_is_the_newest_migration_script() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS))
    assert scripts.get_heads() == [HEAD_REVISION]
    assert scripts.get_current_head() == guard.ledger.database.HEAD_REVISION


def test_upgrade_twice_leaves_the_schema_and_revision_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "guard.db"
    url = f"sqlite:///{path}"
    assert upgrade(url) == HEAD_REVISION
    first = schema(path)
    assert upgrade(url) == HEAD_REVISION
    assert schema(path) == first


def test_the_migrations_create_exactly_the_tables_the_models_declare(db_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []


@pytest.mark.sqlite_only  # SQLite's pragmas and trace callback
def test_every_connection_runs_in_wal_with_full_sync_and_a_busy_timeout(ledger: Ledger) -> None:
    def pragmas() -> tuple[object, ...]:
        with ledger.conns.connection() as conn:
            return tuple(
                conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("journal_mode", "synchronous", "busy_timeout")
            )

    seen: list[tuple[object, ...]] = []
    worker = threading.Thread(target=lambda: seen.append(pragmas()))
    worker.start()
    worker.join()
    assert pragmas() == ("wal", 2, 5000)
    assert seen == [("wal", 2, 5000)]  # from another thread too


def test_a_connection_opened_while_another_holds_the_write_lock_of_a_new_ledger_does_not_fail_at_once(
    db_path: Path,
) -> None:
    ledger = Ledger(f"sqlite:///{db_path}")
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO pauses (scope, target, reason, paused_by, at) VALUES ('team', 'x', 'y', 'z', 0)")
    started = time.monotonic()
    try:
        with ledger.conns.connection():
            pass
    except LedgerUnavailable:
        waited = time.monotonic() - started
        assert waited >= 0.9 * BUSY_TIMEOUT_MS / 1000, f"failed after {waited:.3f}s, not after the busy timeout"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        ledger.close()


def copy_call(path: Path, call_id: str, *, new_id: str, seq: int | None, key: str | None) -> None:
    """Insert a copy of a call row with a new id and the given sequence and idempotency key (raw SQL)."""
    with sqlite3.connect(path) as raw:
        cols: list[str] = [r[1] for r in raw.execute("PRAGMA table_info(calls)")]
        select = ", ".join("?" if c in ("call_id", "seq", "idempotency_key") else c for c in cols)
        params: list[str | int | None] = []
        for c in cols:
            if c == "call_id":
                params.append(new_id)
            elif c == "seq":
                params.append(seq)
            elif c == "idempotency_key":
                params.append(key)
        # The placeholders appear in column order, so the parameters do too.
        raw.execute(
            f"INSERT INTO calls ({', '.join(cols)}) SELECT {select} FROM calls WHERE call_id = ?", (*params, call_id)
        )


@pytest.fixture
def one_call(ledger: Ledger) -> tuple[str, int]:
    ledger.open_run("r", TEAM, actor=AGENT)
    offer = ledger.offer(request("r", key="key-1"))
    return offer.call_id, offer.seq


@pytest.mark.tampers
def test_two_calls_may_not_share_a_run_and_sequence(one_call: tuple[str, int], db_path: Path) -> None:
    call_id, seq = one_call
    copy_call(db_path, call_id, new_id="call_ok", seq=seq + 1, key=None)  # control: a distinct row is fine
    with pytest.raises(sqlite3.IntegrityError, match="seq"):
        copy_call(db_path, call_id, new_id="call_dup", seq=seq, key=None)


def test_two_calls_of_a_team_may_not_share_an_idempotency_key(one_call: tuple[str, int], db_path: Path) -> None:
    call_id, seq = one_call
    with pytest.raises(sqlite3.IntegrityError, match="idempotency_key"):
        copy_call(db_path, call_id, new_id="call_dup", seq=seq + 1, key="key-1")


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://", "mysql://localhost/guard"])
def test_an_in_memory_or_unsupported_ledger_url_is_refused(url: str) -> None:
    with pytest.raises(LedgerNotReady):
        Ledger(url)


@pytest.mark.sqlite_only  # SQLite's pragmas and trace callback
def test_connections_are_pooled_across_threads_and_each_is_set_up_alike(ledger: Ledger) -> None:
    with ledger.conns.connection() as first, ledger.conns.connection() as second:
        assert first is not second  # two transactions at once get two connections
        for conn in (first, second):
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    reused: list[object] = []
    worker = threading.Thread(target=lambda: reused.append(ledger.conns.borrow()))
    worker.start()
    worker.join()
    assert reused[0] in (first, second)  # a new thread borrows an open connection instead of opening one
    ledger.conns.give_back(reused[0])


@pytest.mark.sqlite_only  # SQLite's pragmas and trace callback
def test_recovery_finds_the_unsettled_calls_through_their_index_not_a_scan_of_every_call(ledger: Ledger) -> None:
    seen: list[str] = []
    with ledger.conns.connection() as conn:  # the pool's one connection: the queries below run on it
        conn.set_trace_callback(seen.append)
    try:
        ledger.calls_in_state((CallState.STARTED,))
        ledger.calls_in_state((CallState.IN_DOUBT,), run_id="run-1")
        ledger.calls_in_state((CallState.STARTED, CallState.IN_DOUBT))
    finally:
        with ledger.conns.connection() as conn:
            conn.set_trace_callback(None)
    queries = [sql for sql in seen if sql.startswith("SELECT")]
    assert len(queries) == 3
    with ledger.conns.connection() as conn:
        for sql in queries:
            plan = " ".join(str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
            assert plan.startswith("SEARCH calls USING INDEX") and "SCAN calls" not in plan, (sql, plan)
            if "run_id =" not in sql:
                assert "ix_calls_unsettled" in plan, (sql, plan)


@pytest.mark.sqlite_only  # SQLite's trace callback and query plans
def test_the_three_numbers_read_their_window_through_indexes_not_a_scan_of_the_ledger(ledger: Ledger) -> None:
    from guard.ledger import health_numbers

    seen: list[str] = []
    with ledger.conns.connection() as conn:
        conn.set_trace_callback(seen.append)
    try:
        health_numbers(ledger.conns, 0.0)
    finally:
        with ledger.conns.connection() as conn:
            conn.set_trace_callback(None)
    queries = [sql for sql in seen if sql.startswith("SELECT")]
    assert len(queries) == 4  # the first call, calls, failure events (by time, the first of a run first), approvals
    with ledger.conns.connection() as conn:
        plans = [" ".join(str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql)) for sql in queries]
    for index, plan in zip(
        ("ix_calls_offered_at", "ix_calls_offered_at", "ix_events_failures", "ix_approvals_decided"), plans, strict=True
    ):
        assert index in plan and "SCAN c " not in plan and not plan.startswith("SCAN"), plan


def test_a_migration_wait_that_is_not_a_positive_number_of_seconds_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARD_MIGRATION_WAIT", "soon")
    with pytest.raises(LedgerNotReady, match="GUARD_MIGRATION_WAIT='soon': give a number of seconds above 0"):
        Ledger(f"sqlite:///{tmp_path / 'guard.db'}")
    assert not (tmp_path / "guard.db").exists()  # nothing created on a refused start


def test_a_postgresql_migration_waits_for_another_ones_lock_at_most_the_migration_wait_then_says_what_to_do(
    pg_cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process migrating (its advisory lock held) makes this one give up after GUARD_MIGRATION_WAIT with a
    clear error, having changed nothing; once that one commits, the migration goes through."""
    import psycopg

    url = pg_cluster.create_database(f"mig_{tmp_path.name}".lower()[:60])
    monkeypatch.setenv("GUARD_MIGRATION_WAIT", "0.3")
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (guard.ledger.database._MIGRATION_LOCK,))  # pyright: ignore[reportPrivateUsage]
        with pytest.raises(LedgerUnavailable, match=r"still held its lock after 0\.3s.*GUARD_MIGRATION_WAIT"):
            upgrade(url)
        assert current_revision(url) is None  # nothing half-done
    assert upgrade(url) == HEAD_REVISION
