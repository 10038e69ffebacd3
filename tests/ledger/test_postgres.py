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
