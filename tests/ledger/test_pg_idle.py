"""A worker stopped inside a ledger transaction on PostgreSQL holds nobody up for long: the server ends the
transaction after `idle_in_transaction_session_timeout` (rolled back, never half-applied), the run's other writers
go on, and the stopped worker finds its connection gone when it runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ledger_support import AGENT, TEAM, request
from pg_cluster import PgCluster

from guard.ledger import Ledger
from guard.ledger.backend_postgres import IDLE_IN_TRANSACTION

# Opens the run's lock and writes an event inside one transaction, says so, and stops itself there (SIGSTOP).
STOPPED_INSIDE = """
import os, signal, sys, time
from guard.errors import GuardError
from guard.ledger import Ledger
from guard.ledger.chain import run_stream
from guard.ledger.moves import append_events
ledger = Ledger(sys.argv[1])
try:
    with ledger.conns.write(lock=run_stream("r")) as cur:
        append_events(cur, [("r", None, time.time(), "stopped", "run", "running", "running", "{}")])
        print("held", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    print("committed", flush=True)
except GuardError as exc:
    print(type(exc).__name__, flush=True)
"""


@pytest.fixture
def pg_url(pg_cluster: PgCluster, tmp_path: Path) -> str:
    return pg_cluster.create_database(f"idle_{tmp_path.name}".lower()[:60], template="guard_template")


def test_every_ledger_connection_ends_a_transaction_left_open_after_the_limit(pg_url: str) -> None:
    ledger = Ledger(pg_url)
    try:
        with ledger.conns.connection() as conn:
            (shown,) = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        assert shown == "1min" and IDLE_IN_TRANSACTION == "60s"
    finally:
        ledger.close()


def test_a_worker_stopped_inside_a_transaction_is_cut_off_and_the_runs_next_offer_goes_through(pg_url: str) -> None:
    short = pg_url + ("&" if "?" in pg_url else "?") + "options=-c%20idle_in_transaction_session_timeout%3D500"
    ledger = Ledger(pg_url)
    ledger.open_run("r", TEAM, actor=AGENT)
    child = subprocess.Popen(
        [sys.executable, "-c", STOPPED_INSIDE, short],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        # Blocks on the run's lock until the server ends the stopped worker's transaction (half a second here).
        offer = ledger.offer(request("r"))
        assert offer.kind == "started"
        assert [e.actor for e in ledger.events_of("r")].count("stopped") == 0  # its event was rolled back
        os.kill(child.pid, signal.SIGCONT)
        out, _ = child.communicate(timeout=60)
        assert out.strip() == "LedgerUnavailable"  # it learns its transaction is gone: nothing claimed as written
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
        ledger.close()
