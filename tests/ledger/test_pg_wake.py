"""Waking on PostgreSQL: a decision committed in another process reaches this process's waiting agents through
its one LISTEN connection; the per-call lifecycle notifies nobody; a LISTEN connection that was cut comes back
and wakes every waiter; one that cannot be opened leaves the waiters their poll."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ledger_support import request
from pg_cluster import PgCluster

from guard import Guard
from guard.ledger import Ledger
from guard.ledger.listener import APPLICATION_NAME
from guard.ledger.signals import CHANNEL
from guard.runtime.waiting import Waiter
from guard.testing import poll

DECIDE = (
    "import sys; from guard.ledger import Ledger; Ledger(sys.argv[1]).decide(sys.argv[2], reviewer='alice', "
    "decision='approve', reviewer_roles=frozenset({'finance'}))"
)
POLICY = """\
team: ops
reviewers: {alice: [finance]}
rules:
  - {name: notes, tools: [crm.add_note], class: idempotent}
"""


def _database(cluster: PgCluster, tmp_path: Path) -> tuple[str, str]:
    name = f"wake_{tmp_path.name}".lower()[:60]
    return name, cluster.create_database(name, template="guard_template")


@pytest.fixture
def pg_url(pg_cluster: PgCluster, tmp_path: Path) -> str:
    return _database(pg_cluster, tmp_path)[1]


@pytest.fixture
def pg_ledger(pg_url: str) -> Iterator[Ledger]:
    ledger = Ledger(pg_url)
    try:
        yield ledger
    finally:
        ledger.close()


def _awaiting(ledger: Ledger, run_id: str = "r") -> tuple[str, str]:
    """A call waiting for finance's approval: (call id, approval id)."""
    ledger.open_run(run_id, "ops", actor="agent")
    offer = ledger.offer(request(run_id, verdict="approve", key=f"k-{run_id}"))
    assert offer.approval_id is not None
    return offer.call_id, offer.approval_id


def _decide_elsewhere(url: str, approval_id: str) -> None:
    subprocess.run([sys.executable, "-c", DECIDE, url, approval_id], check=True, timeout=60)


def _listen_backends(cluster: PgCluster, database: str) -> list[int]:
    with psycopg.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, APPLICATION_NAME),
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_a_decision_committed_in_another_process_reaches_this_process_through_its_listen_connection(
    pg_ledger: Ledger,
) -> None:
    _, approval_id = _awaiting(pg_ledger)
    watch = pg_ledger.wakes.watch()
    assert watch.listening and not watch.moved()
    _decide_elsewhere(pg_ledger.url, approval_id)  # no Ledger of this process decides: only NOTIFY can tell it
    poll(watch.moved, what="the other process's decision reaching this process")


def test_a_blocked_agent_returns_the_decision_made_in_another_process(pg_ledger: Ledger) -> None:
    call_id, approval_id = _awaiting(pg_ledger)
    got: list[str | None] = []
    waiter = threading.Thread(target=lambda: got.append(Waiter(pg_ledger).wait(call_id, approval_id, 2e9, timeout=60)))
    waiter.start()
    _decide_elsewhere(pg_ledger.url, approval_id)
    waiter.join(60)
    assert got == ["approved"]


def test_an_async_agent_returns_the_decision_made_in_another_process(pg_ledger: Ledger) -> None:
    call_id, approval_id = _awaiting(pg_ledger)

    async def scenario() -> str | None:
        waiting = asyncio.ensure_future(Waiter(pg_ledger).await_(call_id, approval_id, 2e9, timeout=60))
        await asyncio.to_thread(_decide_elsewhere, pg_ledger.url, approval_id)
        return await waiting

    assert asyncio.run(scenario()) == "approved"


def test_every_ledger_of_a_process_on_one_database_shares_one_listen_connection_closed_by_the_last(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    database, url = _database(pg_cluster, tmp_path)
    first, second = Ledger(url), Ledger(url)
    try:
        assert _listen_backends(pg_cluster, database) == []  # nobody waits yet: no connection is opened
        first.wakes.watch()
        second.wakes.watch()
        assert first.wakes.listener is second.wakes.listener
        assert len(_listen_backends(pg_cluster, database)) == 1
        first.close()
        assert len(_listen_backends(pg_cluster, database)) == 1  # the second ledger still uses it
    finally:
        first.close()
        second.close()
    poll(lambda: _listen_backends(pg_cluster, database) == [], what="the LISTEN connection closing")


def test_the_per_call_lifecycle_notifies_nobody_and_a_decision_notifies_once(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    database, url = _database(pg_cluster, tmp_path)
    (tmp_path / "ops.yaml").write_text(POLICY)
    with psycopg.connect(
        host="127.0.0.1", port=pg_cluster.port, user="postgres", dbname=database, autocommit=True
    ) as listening:
        listening.execute(f"LISTEN {CHANNEL}")
        with Guard(db=url, policies=tmp_path, log_level="error") as guard, closing(Ledger(url)) as reviewer:
            note = guard.tool(_note, name="crm.add_note")
            for n in range(5):
                with guard.run("ops", source_event_id=f"e{n}"):
                    note(text=f"n{n}")  # offered+started, then completed: two commits, no NOTIFY
            _, approval_id = _awaiting(reviewer)
            reviewer.decide(approval_id, reviewer="alice", decision="approve", reviewer_roles=frozenset({"finance"}))
        # Notifications arrive in commit order: any the lifecycle sent would come before the decision's.
        heard = list(listening.notifies(timeout=10, stop_after=1))
        listening.execute("SELECT 1")
        heard += list(listening.notifies(timeout=0))
    assert [n.channel for n in heard] == [CHANNEL]


def test_a_cut_listen_connection_comes_back_by_itself_and_wakes_every_waiter(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    database, url = _database(pg_cluster, tmp_path)
    ledger = Ledger(url)
    try:
        _, approval_id = _awaiting(ledger)
        watch = ledger.wakes.watch()
        listener = ledger.wakes.listener
        assert listener is not None and listener.connects == 1
        [pid] = _listen_backends(pg_cluster, database)
        pg_cluster.sql(f"SELECT pg_terminate_backend({pid})")
        poll(lambda: listener.connects == 2 and listener.live, what="the LISTEN connection coming back")
        assert watch.moved()  # a notification sent while it was cut off is lost: every waiter reads again
        _decide_elsewhere(url, approval_id)
        poll(watch.moved, what="a decision after the reconnect reaching this process")
    finally:
        ledger.close()


def test_a_listen_connection_that_cannot_be_opened_leaves_the_waiter_its_poll(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    _, url = _database(pg_cluster, tmp_path)
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/postgres"
    ledger = Ledger(url, listen_url=nowhere)
    try:
        call_id, approval_id = _awaiting(ledger)
        watch = ledger.wakes.watch()
        assert not watch.listening and ledger.wakes.listener is not None
        assert ledger.wakes.listener.last_error is not None
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(Waiter(ledger).wait(call_id, approval_id, 2e9, 60)))
        waiter.start()
        _decide_elsewhere(url, approval_id)
        waiter.join(60)
        assert got == ["approved"]
    finally:
        ledger.close()


def _note(text: str) -> dict[str, str]:
    return {"note": text}


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens there
