"""The PostgreSQL server going down under a worker and coming back: a call that cannot be recorded is refused
with LedgerUnavailable and never runs, the worker reconnects by itself, and nothing is lost or doubled.

These tests stop their server, so they run on a cluster of their own (`outage_cluster`), never the session's.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_cluster import PgCluster, server_bin_dir

from guard import Guard, LedgerUnavailable
from guard.ledger import upgrade
from guard.runtime.doors import ledger_of
from guard.testing import poll

POLICY = """\
team: ops
reviewers: {alice: [finance]}
rules:
  - {name: notes, tools: [crm.add_note], class: compensable}
  - {name: refunds, tools: [billing.refund], class: irreversible, approval: {roles: [finance]}}
"""
DECIDE = (
    "import sys; from guard.ledger import Ledger; Ledger(sys.argv[1]).decide(sys.argv[2], reviewer='alice', "
    "decision='approve', reviewer_roles=frozenset({'finance'}))"
)


def _recording(effects: list[str], field: str) -> Callable[..., dict[str, str]]:
    """A tool that records each effect it has in `effects`."""

    def tool(**kw: str) -> dict[str, str]:
        [value] = kw.values()
        effects.append(value)
        return {field: value}

    return tool


@pytest.fixture(scope="module")
def outage_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server of this module's own, which its tests stop and start."""
    bin_dir = server_bin_dir()
    assert bin_dir is not None, "no PostgreSQL server binaries: run .ci/ensure-postgres"
    cluster = PgCluster(bin_dir).start()
    try:
        upgrade(cluster.create_database("outage_template"))
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def running(outage_cluster: PgCluster) -> Iterator[PgCluster]:
    """The module's server, running when the test starts and again when it ends (whatever the test left)."""
    yield outage_cluster
    try:
        outage_cluster.sql("SELECT 1")
    except psycopg.OperationalError:  # the test left it stopped
        outage_cluster.start()


@pytest.fixture
def guard(running: PgCluster, tmp_path: Path) -> Iterator[Guard]:
    (tmp_path / "ops.yaml").write_text(POLICY)
    url = running.create_database(f"o_{tmp_path.name}".lower()[:60], template="outage_template")
    with Guard(db=url, policies=tmp_path, log_level="error", approval_timeout=120) as made:
        yield made


def test_a_call_whose_offer_cannot_be_committed_is_refused_and_runs_once_when_the_server_is_back(
    guard: Guard, running: PgCluster
) -> None:
    effects: list[str] = []
    note = guard.tool(_recording(effects, "note"), name="crm.add_note")

    with pytest.raises(LedgerUnavailable) as refused, guard.run("ops", source_event_id="e1"):
        running.stop(mode="immediate")
        note(text="hello")
    assert effects == []  # its `offered` could not be committed: the tool never ran
    message = str(refused.value)
    assert f"127.0.0.1:{running.port}" in message and "did not run" in message and "reconnects by itself" in message

    running.start()
    with guard.run("ops", source_event_id="e1") as run:  # the same event delivered again, same worker
        note(text="hello")
        note(text="hello")  # the same call twice in one run: recorded once, run once
    assert effects == ["hello"]
    assert [(c.tool, c.state) for c in guard.ledger.calls_of(run.run_id)] == [("crm.add_note", "completed")]
    assert guard.ledger.verify_chain().ok


def test_a_call_refused_while_the_server_is_down_leaves_no_trace_and_the_next_runs(
    guard: Guard, running: PgCluster
) -> None:
    effects: list[str] = []
    note = guard.tool(_recording(effects, "note"), name="crm.add_note")
    running.stop(mode="immediate")
    with pytest.raises(LedgerUnavailable), guard.run("ops", source_event_id="down"):
        note(text="never")
    running.start()
    with guard.run("ops", source_event_id="up"):
        note(text="after")
    assert effects == ["after"]
    assert [r.run_id for r in guard.ledger.list_runs(limit=10)] == ["ops:up"]  # nothing half-written


def test_an_agent_waiting_for_a_decision_rides_out_an_outage_and_is_woken_by_a_decision_made_after_it(
    guard: Guard, running: PgCluster
) -> None:
    refunds: list[str] = []
    refund = guard.tool(_recording(refunds, "refund"), name="billing.refund")
    outcome: list[Any] = []

    def agent() -> None:
        try:
            with guard.run("ops", source_event_id="wait"):
                outcome.append(refund(invoice="inv_1"))
        except Exception as exc:  # noqa: BLE001 (whatever it is, the assertion below shows it)
            outcome.append(exc)

    thread = threading.Thread(target=agent)
    thread.start()
    [pending] = poll(lambda: guard.ledger.list_approvals(state="pending", team="ops"), what="the approval request")
    own = ledger_of(guard)  # the agent's own LISTEN connection is the one the outage cuts
    listener = poll(lambda: own.wakes.listener, what="the agent asking for its LISTEN connection")
    assert listener is not None
    poll(lambda: listener.live, what="the agent's LISTEN connection")

    running.stop(mode="immediate")
    poll(lambda: not listener.live, what="the LISTEN connection seeing the server go")
    running.start()
    poll(lambda: listener.live and listener.connects >= 2, what="the LISTEN connection coming back by itself")
    assert thread.is_alive() and outcome == []  # still waiting: the outage was not taken for a decision

    subprocess.run([sys.executable, "-c", DECIDE, own.url, pending.approval_id], check=True, timeout=60)
    thread.join(60)
    assert outcome == [{"refund": "inv_1"}] and refunds == ["inv_1"]


def test_a_password_in_the_ledger_url_never_shows_in_the_error_at_start_or_on_a_call(
    running: PgCluster, tmp_path: Path
) -> None:
    (tmp_path / "ops.yaml").write_text(POLICY)
    running.create_database("secretive", template="outage_template")
    url = f"postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:{running.port}/secretive"  # trust: any password
    effects: list[str] = []
    with Guard(db=url, policies=tmp_path, log_level="error") as guard:
        note = guard.tool(_recording(effects, "note"), name="crm.add_note")
        with pytest.raises(LedgerUnavailable) as on_call, guard.run("ops", source_event_id="pw"):
            running.stop(mode="immediate")
            note(text="x")
    with pytest.raises(LedgerUnavailable) as at_start:
        Guard(db=url, policies=tmp_path, log_level="error")
    for refused in (on_call.value, at_start.value):
        assert "s3cret-pw" not in str(refused) and "s3cret-pw" not in repr(refused.fields)
        assert f"postgres:***@127.0.0.1:{running.port}/secretive" in str(refused)
    assert effects == []
