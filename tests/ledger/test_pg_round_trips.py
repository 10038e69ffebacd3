"""How a guarded call reaches PostgreSQL: its round trips, and the COMMIT that rides with a transaction's last
statement (`guard.ledger.backend_postgres`), also when that statement must fall back because another process
moved the run's stream head meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_cluster import PgCluster

from guard import Guard
from guard.ledger.pg_wire import Wire
from guard.runtime import report_external_id
from guard.runtime.doors import ledger_of

POLICY = """\
team: pgtrips
reviewers: {alice: [finance]}
rules:
  - name: notes
    tools: [crm.add_note]
    class: compensable
  - name: reads
    tools: [crm.find]
    class: read
  - name: tags
    tools: [crm.tag]
    class: idempotent
    on_failure: retry
"""

# Another worker process writing on the same run: its run event moves the run's stream head past the one this
# process remembers.
_OTHER_WORKER = """
import sys
from guard.ledger import Ledger
from guard.ledger.moves import RunClose
from guard.ledger.states import RunState
ledger = Ledger(sys.argv[1])
ledger.move_run(sys.argv[2], RunClose(RunState.RUNNING, status_label=sys.argv[3]), actor="other-worker")
ledger.close()
"""


@pytest.fixture
def pg_guard(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[Guard]:
    (tmp_path / "pgtrips.yaml").write_text(POLICY)
    url = pg_cluster.create_database(f"trips_{tmp_path.name}".lower(), template="guard_template")
    guard = Guard(db=url, policies=tmp_path, log_level="warning")
    try:
        yield guard
    finally:
        guard.close()


class _Trips:
    """The round trips this process makes to the server while entered: each psycopg execute, each send of `Wire`;
    and the statements they carry (`statements`: each of a pipeline's counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.statements = 0
        for owner, name in (
            (psycopg.Cursor, "execute"),
            (psycopg.Cursor, "executemany"),
            (Wire, "run"),
            (Wire, "plain"),
            (Wire, "first"),
        ):
            monkeypatch.setattr(owner, name, self._counted(getattr(owner, name)))

    def _counted(self, orig: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            if orig.__name__ == "first":  # (self, before, sql, params, after)
                _, before, sql, _, *after = args
                self.statements += len(before) + (sql is not None) + len(after[0] if after else ())
            else:
                self.statements += 1
            return orig(*args, **kwargs)

        return counted


def test_a_guarded_auto_approved_call_makes_three_round_trips(pg_guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    def echo(i: int) -> dict[str, int]:
        return {"i": i}

    find = pg_guard.tool(echo, name="crm.find")
    note = pg_guard.tool(echo, name="crm.add_note")
    with pg_guard.run("pgtrips") as run:
        find(i=-1)  # warm: connections open, statements prepared, the run's head known
        note(i=-1)
        trips = _Trips(monkeypatch)
        for i in range(10):
            find(i=i)  # repeat-safe: its completion commits lazily
            note(i=i)  # compensable: every commit durable
        counted, statements = trips.count, trips.statements
        monkeypatch.undo()
    # Offer: BEGIN, the run's lock and its gate in one; the call's row, its event and the COMMIT in the other.
    # Completion of a call this process started: BEGIN, the durability, the row's compare-and-set on the row as
    # this process wrote it, its event and the COMMIT, in one.
    assert counted == 20 * 3
    # Statements: the offer's BEGIN, lock, gate, [row + head + event], COMMIT; the completion's BEGIN, (durability:
    # the repeat-safe call's only), [compare-and-set + head + event], COMMIT. No savepoint in any of them.
    assert statements == 10 * (5 + 4) + 10 * (5 + 3)
    calls = pg_guard.ledger.calls_of(run.run_id)
    assert [c.state for c in calls] == ["completed"] * 22
    assert pg_guard.ledger.verify_chain().ok


def test_a_call_whose_run_head_another_worker_moved_meanwhile_still_commits_once_on_the_chain(
    pg_guard: Guard, pg_cluster: PgCluster
) -> None:
    url = ledger_of(pg_guard).url
    run_ids: list[str] = []

    def other_worker_writes(label: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", _OTHER_WORKER, url, run_ids[0], label], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr

    def add_note(text: str) -> dict[str, str]:
        other_worker_writes(f"during {text}")  # between this call's offer and its completion
        return {"note": text}

    note = pg_guard.tool(add_note, name="crm.add_note")
    with pg_guard.run("pgtrips") as run:
        run_ids.append(run.run_id)
        note(text="one")  # its completion's remembered head is stale
        other_worker_writes("between")  # the next offer's remembered head is stale
        note(text="two")
    calls = pg_guard.ledger.calls_of(run.run_id)
    assert [(c.state, c.result_json) for c in calls] == [
        ("completed", '{"note":"one"}'),
        ("completed", '{"note":"two"}'),
    ]
    report = pg_guard.ledger.verify_chain()
    assert report.ok, report
    events = pg_guard.ledger.events_of(run.run_id)
    labels = [json.loads(e.detail)["status_label"] for e in events if e.entity == "run" and e.actor == "other-worker"]
    assert labels == ["during one", "between", "during two"]
    offered = [e for e in events if e.entity == "call" and e.from_state is None]
    assert len(offered) == 2  # each call recorded once: the refused statement left nothing behind


def test_a_call_whose_row_changed_while_it_ran_completes_with_a_claim_of_the_row_as_it_is(pg_guard: Guard) -> None:
    """The completion's one-statement path (the row as this process inserted it) finds the row changed (an external
    id reported mid-call, and a second one): it writes nothing, and the plain path completes the call with the claim
    of the row as it now is, which `verify` checks against the row."""

    def create_invoice(amount: int) -> dict[str, int]:
        report_external_id("invoice", f"inv_{amount}")
        report_external_id("draft", f"d_{amount}")
        return {"amount": amount}

    invoice = pg_guard.tool(create_invoice, name="crm.add_note")
    with pg_guard.run("pgtrips") as run:
        invoice(amount=5)
        invoice(amount=7)
    calls = pg_guard.ledger.calls_of(run.run_id)
    assert [(c.state, json.loads(c.external_ids)) for c in calls] == [
        ("completed", {"invoice": "inv_5", "draft": "d_5"}),
        ("completed", {"invoice": "inv_7", "draft": "d_7"}),
    ]
    report = pg_guard.ledger.verify_chain()
    assert report.ok, report
    events = pg_guard.ledger.events_of(run.run_id)
    completions = [e for e in events if e.entity == "call" and e.to_state == "completed"]
    assert len(completions) == 2


def test_a_call_retried_after_a_clean_failure_completes_with_a_claim_of_its_row_as_it_is(pg_guard: Guard) -> None:
    """A repeat-safe call that failed cleanly once keeps that attempt's error on its row, a column the completion
    does not set: the completion must not claim the row as this process first inserted it (error empty), or
    `verify` would call the row edited."""
    tries: list[str] = []

    def tag(name: str) -> dict[str, str]:
        tries.append(name)
        if len(tries) == 1:
            raise ValueError("the CRM refused the tag this once")
        return {"tag": name}

    tag_tool = pg_guard.tool(tag, name="crm.tag")
    with pg_guard.run("pgtrips") as run:
        tag_tool(name="vip")
    (call,) = pg_guard.ledger.calls_of(run.run_id)
    assert (call.state, call.attempts, tries) == ("completed", 2, ["vip", "vip"])
    assert call.error is not None and "refused the tag" in call.error
    report = pg_guard.ledger.verify_chain()
    assert report.ok, report


def test_a_runs_open_and_close_read_no_row_back(pg_guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new run's open checks the pauses at its source in the transaction that inserts it, and takes the row's
    claim from the insert itself, and makes its stream's head row with its event and the COMMIT; its close takes the
    claim and the record from the update itself, and its COMMIT rides with the run's event. (Before this change:
    open 7 round trips, close 8; before the marks' delete rode in the update, close 4.)"""

    def echo(i: int) -> dict[str, int]:
        return {"i": i}

    find = pg_guard.tool(echo, name="crm.find")
    with pg_guard.run("pgtrips", source_event_id="warm"):  # warm: connections open, recovery done
        find(i=0)
    trips = _Trips(monkeypatch)
    with pg_guard.run("pgtrips", source_event_id="one") as run:
        opened = (trips.count, trips.statements)
        find(i=1)
        trips.count = trips.statements = 0
    closed = (trips.count, trips.statements)
    monkeypatch.undo()
    # Open: BEGIN with the run's insert (RETURNING the row); the pauses at the source; the new stream's head row
    # made with the event, and the COMMIT.
    assert opened == (3, 5)
    # Close: BEGIN, the run's lock and its state; the update (RETURNING the row and the record) with the delete of
    # the run's stop-rule marks in its statement; the head's move with the event and the COMMIT.
    assert closed == (3, 6)
    assert run.record().state == "completed"
    assert pg_guard.ledger.verify_chain().ok


def test_a_close_whose_run_head_another_worker_moved_meanwhile_closes_the_run_once(
    pg_guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The close's COMMIT rides with the run's event, sent strict on the head this process remembers; another
    process moved that head after the last call, so the statement is refused, the close is rolled back whole and
    made again the plain way: the run ends completed, with one closing event, on an intact chain."""
    url = ledger_of(pg_guard).url
    tries: list[bool] = []

    def close_run(*args: Any, **kwargs: Any) -> Any:
        tries.append(bool(kwargs.get("fold", args[-1] if args else None)))
        return plain_close(*args, **kwargs)

    plain_close = ledger_of(pg_guard)._close_run  # pyright: ignore[reportPrivateUsage]
    monkeypatch.setattr(ledger_of(pg_guard), "_close_run", close_run)

    def echo(i: int) -> dict[str, int]:
        return {"i": i}

    find = pg_guard.tool(echo, name="crm.find")
    with pg_guard.run("pgtrips") as run:
        find(i=1)
        proc = subprocess.run(
            [sys.executable, "-c", _OTHER_WORKER, url, run.run_id, "before the close"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
    assert tries == [True, False]  # folded and refused, then made the plain way
    assert run.record().state == "completed"
    events = pg_guard.ledger.events_of(run.run_id)
    assert [(e.from_state, e.to_state) for e in events if e.entity == "run" and e.actor != "other-worker"] == [
        (None, "running"),
        ("running", "completed"),
    ]
    report = pg_guard.ledger.verify_chain()
    assert report.ok, report


@pytest.mark.tampers
def test_a_new_run_whose_stream_already_has_a_head_row_chains_onto_it(pg_guard: Guard) -> None:
    """A new run's open makes its stream's head row with its first event. Where that row exists already (here made
    by hand: a run id used again after its run was deleted), the folded statement is refused, the open is made again
    the plain way, and the run's event chains onto the head the row holds."""
    url = ledger_of(pg_guard).url
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as raw:
        raw.execute("INSERT INTO stream_heads (stream, length, head) VALUES ('run:pgtrips:again', 2, %s)", ("a" * 64,))
    with pg_guard.run("pgtrips", source_event_id="again") as run:
        pass
    assert run.record().state == "completed"
    events = [e for e in pg_guard.ledger.events_of(run.run_id) if e.entity == "run"]
    assert [(e.seq, e.from_state, e.to_state) for e in events] == [(3, None, "running"), (4, "running", "completed")]
