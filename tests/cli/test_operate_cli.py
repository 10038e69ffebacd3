"""`guard runs compensate | finish | retry-call` and `guard recover` through the CLI, on a real ledger, with the
agent's tools loaded from `--app module:attribute`."""

from __future__ import annotations

import importlib
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from typer.testing import CliRunner

from guard import CallFailed, Guard
from guard.cli import app as cli
from guard.ledger import Ledger
from tests.crashed import dead_pid, left_started

POLICY = """\
team: ops
reviewers: {oncall: [ops]}
rules:
  - {name: charge, tools: [billing.charge], class: compensable}
  - {name: refund, tools: [billing.refund], class: idempotent}
  - {name: ship, tools: [warehouse.ship], class: compensable, on_failure: halt}
"""

APP = """\
from pathlib import Path
from guard import Guard, RollbackContext

REFUNDS = Path(__file__).with_name("refunds.txt")


def app(db=None):
    guard = Guard(policies=str(Path(__file__).with_name("policies")), db=db, log_level="error")

    @guard.tool(name="billing.charge", external_ids={"charge": "charge_id"})
    def charge(amount):
        return {"charge_id": f"ch_{amount}"}

    @charge.compensation(name="billing.refund", kind="void")
    def refund(ctx: RollbackContext):
        with REFUNDS.open("a") as out:
            out.write(ctx.external_ids["charge"] + "\\n")

    @guard.tool(name="warehouse.ship")
    def ship(order):
        if Path(__file__).with_name("carrier-down").exists():
            raise RuntimeError("carrier API down")

    return guard
"""


@pytest.fixture
def ops_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "ops.yaml").write_text(POLICY)
    (tmp_path / "opsapp.py").write_text(APP)
    (tmp_path / "carrier-down").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # pyright: ignore[reportUnknownMemberType]  # pytest types it partly
    monkeypatch.delitem(sys.modules, "opsapp", raising=False)  # each test imports its own copy
    return tmp_path


def halted_run(db_path: Path, folder: Path, event: str) -> str:
    """An order whose charge went through and whose shipping failed: the run waits for review."""
    factory = cast(Callable[..., Guard], importlib.import_module("opsapp").app)  # written by the fixture
    guard = factory(db=str(db_path))
    try:
        charge, ship = guard.tool_named("billing.charge"), guard.tool_named("warehouse.ship")
        assert charge is not None and ship is not None
        with pytest.raises(CallFailed), guard.run("ops", source_event_id=event) as run:
            charge(amount=42)
            ship(order="o-1")
        return run.run_id
    finally:
        guard.close()


def test_compensate_through_the_cli_refunds_the_charge_once_and_rolls_the_run_back(
    ops_app: Path, db_path: Path
) -> None:
    run_id = halted_run(db_path, ops_app, "order-1")
    runner = CliRunner()
    args = [
        "runs",
        "compensate",
        run_id,
        "--note",
        "customer cancelled",
        "--as",
        "oncall",
        "--app",
        "opsapp:app",
        "--db",
        str(db_path),
    ]
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert f"run {run_id}: rolled_back" in done.output
    assert (ops_app / "refunds.txt").read_text() == "ch_42\n"
    again = runner.invoke(cli, args)  # the run is rolled back: nothing left to do, nothing refunded twice
    assert again.exit_code == 1
    assert (ops_app / "refunds.txt").read_text() == "ch_42\n"


def test_finish_needs_a_note_and_closes_the_run_by_hand(ops_app: Path, db_path: Path) -> None:
    run_id = halted_run(db_path, ops_app, "order-2")
    runner = CliRunner()
    missing = runner.invoke(cli, ["runs", "finish", run_id, "--db", str(db_path)])
    assert missing.exit_code == 2
    done = runner.invoke(
        cli, ["runs", "finish", run_id, "--note", "shipped by hand", "--as", "oncall", "--db", str(db_path)]
    )
    assert done.exit_code == 0 and f"run {run_id}: finished_by_hand (billing_charged_warehouse_failed)" in done.output
    story = runner.invoke(cli, ["runs", "show", run_id, "--db", str(db_path), "--no-events"])
    assert "state finished_by_hand" in story.output and "state completed" not in story.output
    assert "FINISHED BY HAND by oncall" in story.output and "shipped by hand" in story.output
    listed = runner.invoke(cli, ["runs", "list", "--db", str(db_path), "--json"])
    assert [r["state"] for r in json.loads(listed.output) if r["run_id"] == run_id] == ["finished_by_hand"]


def test_retry_call_runs_the_failed_call_again_once_the_cause_is_fixed(ops_app: Path, db_path: Path) -> None:
    run_id = halted_run(db_path, ops_app, "order-3")
    (ops_app / "carrier-down").unlink()
    guard = Guard(policies=ops_app / "policies", db=str(db_path), log_level="error")
    try:
        [ship] = [c for c in guard.ledger.calls_of(run_id) if c.tool == "warehouse.ship"]
    finally:
        guard.close()
    runner = CliRunner()
    args = [
        "runs",
        "retry-call",
        run_id,
        ship.call_id,
        "--note",
        "carrier is back; no parcel left",
        "--app",
        "opsapp:app",
        "--db",
        str(db_path),
    ]
    refused = runner.invoke(cli, args)  # shipping declares no reconcile check: nobody knows it did nothing
    assert refused.exit_code == 1 and "--confirmed-absent" in refused.output
    done = runner.invoke(cli, [*args, "--confirmed-absent"])  # the operator checked the carrier by hand
    assert done.exit_code == 0, done.output
    assert f"call {ship.call_id}: completed (ran once)" in done.output
    assert f"run {run_id}: running; next:" in done.output


def test_recover_reports_what_it_did_and_a_bad_app_is_a_usage_error(ops_app: Path, db_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(cli, ["recover", "--app", "opsapp:app", "--db", str(db_path)])
    assert done.exit_code == 0 and "claimed 0" in done.output
    bad = runner.invoke(cli, ["recover", "--app", "opsapp", "--db", str(db_path)])
    assert bad.exit_code == 2 and "module:attribute" in bad.output


def test_recover_right_after_a_crash_says_which_lease_holds_a_call_until_when_and_how_to_take_it_over_now(
    ops_app: Path, db_path: Path
) -> None:
    ledger = Ledger(f"sqlite:///{db_path}")
    try:
        # What a worker killed mid-charge leaves: its lease lives on for a minute.
        left_started(
            ledger, "ops:order-9", "billing.charge", "compensable", {"amount": 9}, ttl=60.0, worker="box-7:4242:w"
        )
    finally:
        ledger.close()
    runner = CliRunner()
    base = ["recover", "--app", "opsapp:app", "--db", str(db_path)]

    first = runner.invoke(cli, base)

    assert first.exit_code == 0 and "claimed 0" in first.output
    assert "held by worker box-7:4242:w: #1 billing.charge in run ops:order-9" in first.output
    assert "its lease runs out in 6" in first.output or "its lease runs out in 5" in first.output
    assert "guard recover --app opsapp:app --dead-worker box-7:4242:w" in first.output
    as_json = json.loads(runner.invoke(cli, [*base, "--json"]).output)
    assert [(h["worker"], h["tool"]) for h in as_json["held"]] == [("box-7:4242:w", "billing.charge")]

    forced = runner.invoke(cli, [*base, "--dead-worker", "box-7:4242:w"])  # the on-call knows box-7 died

    assert forced.exit_code == 0 and "claimed 1" in forced.output and "held by" not in forced.output
    assert "review: ops:order-9 #1 billing.charge: its tool declares no reconcile check" in forced.output


def test_recover_says_a_holder_on_this_host_whose_process_is_gone_is_dead(ops_app: Path, db_path: Path) -> None:
    pid = dead_pid()
    worker = f"{socket.gethostname()}:{pid}:w"
    ledger = Ledger(f"sqlite:///{db_path}")
    try:
        left_started(
            ledger, "ops:order-10", "warehouse.ship", "compensable", {"order": "o-10"}, ttl=60.0, worker=worker
        )
    finally:
        ledger.close()
    done = CliRunner().invoke(cli, ["recover", "--app", "opsapp:app", "--db", str(db_path)])
    assert f"ran on this host as process {pid}, which is not running any more: it is dead" in done.output
    assert f"guard recover --app opsapp:app --dead-worker {worker}" in done.output
