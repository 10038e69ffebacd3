"""The `guard` command line on a real ledger file: as a subprocess (the installed entry point) and through
typer's runner. Exit codes: 0 ok, 1 check failed or refused, 2 usage error."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from guard import ApprovalPending, CallDenied, Guard
from guard.cli import app
from guard.ledger import HEAD_REVISION, Ledger

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
WELCOME = {"to": "ada@example.com", "workspace_id": "ws_1"}


def guard_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m guard ...` as a separate process, as a user or a script would."""
    full_env = {**os.environ, "GUARD_POLICY_DIR": str(POLICIES), **(env or {})}
    full_env.pop("GUARD_REVIEWER", None)
    return subprocess.run(
        [sys.executable, "-m", "guard", *args], capture_output=True, text=True, env=full_env, timeout=60, check=False
    )


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GUARD_POLICY_DIR", str(POLICIES))
    monkeypatch.delenv("GUARD_REVIEWER", raising=False)
    return CliRunner()


@pytest.fixture
def waiting(db_path: Path) -> Iterator[tuple[Guard, str, str]]:
    """A run whose welcome email waits for support's approval; the agent asking is `sam` (a reviewer)."""
    guard = Guard(policies=POLICIES, db=str(db_path), actor="sam", approval="defer", log_level="error")
    sent: list[dict[str, Any]] = []

    def send_welcome(**kw: Any) -> dict[str, str]:
        sent.append(kw)
        return {"message_id": "m-1"}

    tool = guard.tool(send_welcome, name="email.send_welcome")
    with pytest.raises(ApprovalPending) as pending, guard.run("onboarding") as run:
        tool(**WELCOME)
    try:
        yield guard, run.run_id, pending.value.approval_id
    finally:
        assert sent == []  # nothing in these tests runs the email
        guard.close()


def test_help_explains_the_tool_and_lists_every_command_group() -> None:
    done = guard_cli("--help")
    assert done.returncode == 0
    for word in ("policy", "runs", "approvals", "ledger", "db", "pause"):
        assert word in done.stdout


def test_approvals_list_json_shows_the_waiting_call_with_its_exact_arguments(
    waiting: tuple[Guard, str, str], db_path: Path
) -> None:
    _, run_id, approval_id = waiting
    done = guard_cli("approvals", "list", "--json", "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    [item] = json.loads(done.stdout)
    assert item["approval_id"] == approval_id and item["run_id"] == run_id
    assert item["tool"] == "email.send_welcome" and item["args"] == WELCOME and item["roles"] == ["support"]


def test_a_reviewer_without_the_role_and_the_requester_are_refused_and_nothing_is_decided(
    waiting: tuple[Guard, str, str], db_path: Path
) -> None:
    guard, _, approval_id = waiting
    wrong_role = guard_cli("approvals", "approve", approval_id, "--as", "alice", "--db", str(db_path))
    assert wrong_role.returncode == 1 and "forbidden" in wrong_role.stderr
    own_call = guard_cli("approvals", "approve", approval_id, "--as", "sam", "--db", str(db_path))
    assert own_call.returncode == 1 and "self_approval" in own_call.stderr
    approval = guard.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "pending"
    assert guard.ledger.decisions_of(approval_id) == []


def test_approving_through_the_cli_lets_the_waiting_call_run(waiting: tuple[Guard, str, str], db_path: Path) -> None:
    guard, _, approval_id = waiting
    done = guard_cli(
        "approvals", "approve", approval_id, "--as", "ops-lead", "--reason", "checked", "--db", str(db_path)
    )
    assert done.returncode == 0, done.stderr
    assert "approved by ops-lead" in done.stdout
    approval = guard.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "approved"
    assert guard.ledger.call_state(approval.call_id) == "approved"


def test_approving_an_edit_through_the_cli_binds_the_approval_to_the_edited_arguments(
    waiting: tuple[Guard, str, str], db_path: Path, runner: CliRunner
) -> None:
    guard, _, approval_id = waiting
    edited = {**WELCOME, "to": "ada.lovelace@example.com"}
    bad = runner.invoke(
        app, ["approvals", "approve", approval_id, "--as", "ops-lead", "--edit", "{to:", "--db", str(db_path)]
    )
    assert bad.exit_code == 2 and "not JSON" in bad.output
    done = runner.invoke(
        app,
        [
            "approvals",
            "approve",
            approval_id,
            "--as",
            "ops-lead",
            "--edit",
            json.dumps(edited),
            "--json",
            "--db",
            str(db_path),
        ],
    )
    assert done.exit_code == 0, done.output
    approval = guard.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "approved"
    assert approval.approved_args_json is not None and json.loads(approval.approved_args_json) == edited


def test_deciding_without_saying_who_is_a_usage_error(
    waiting: tuple[Guard, str, str], db_path: Path, runner: CliRunner
) -> None:
    _, _, approval_id = waiting
    result = runner.invoke(app, ["approvals", "approve", approval_id, "--db", str(db_path)])
    assert result.exit_code == 2
    assert "--as" in result.output


def test_a_rejection_needs_a_reason(waiting: tuple[Guard, str, str], db_path: Path, runner: CliRunner) -> None:
    guard, _, approval_id = waiting
    result = runner.invoke(app, ["approvals", "reject", approval_id, "--as", "ops-lead", "--db", str(db_path)])
    assert result.exit_code == 2
    approval = guard.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "pending"


def test_runs_show_tells_the_runs_story_in_json(
    waiting: tuple[Guard, str, str], db_path: Path, runner: CliRunner
) -> None:
    _, run_id, _ = waiting
    result = runner.invoke(app, ["runs", "show", run_id, "--json", "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    story = json.loads(result.output)
    assert story["run"]["state"] == "paused"
    assert [c["state"] for c in story["calls"]] == ["awaiting_approval"]
    assert [s for e in story["events"] if e["entity"] == "call" for s in e["path"]] == ["offered", "awaiting_approval"]
    text = runner.invoke(app, ["runs", "show", run_id, "--db", str(db_path)])
    assert text.exit_code == 0 and "call #1   · -> offered -> awaiting_approval" in text.output  # one event, its path


def test_an_unknown_run_is_a_failed_check_and_a_missing_ledger_a_usage_error(
    db_path: Path, tmp_path: Path, runner: CliRunner
) -> None:
    unknown = runner.invoke(app, ["runs", "show", "run_nope", "--db", str(db_path)])
    assert unknown.exit_code == 1 and "guard runs list" in unknown.output
    missing = runner.invoke(app, ["runs", "list", "--db", str(tmp_path / "absent.db")])
    assert missing.exit_code == 2 and "no ledger" in missing.output
    assert not (tmp_path / "absent.db").exists()  # a read never creates a ledger by accident


def test_ledger_verify_passes_on_an_intact_ledger_and_names_the_row_someone_edited(
    waiting: tuple[Guard, str, str], db_path: Path
) -> None:
    guard, _, _ = waiting
    ok = guard_cli("ledger", "verify", "--db", str(db_path))
    assert ok.returncode == 0 and "ok: 4 events in 1 streams" in ok.stdout
    guard.close()
    with sqlite3.connect(db_path) as conn:
        [(target,)] = conn.execute("SELECT id FROM events WHERE to_state = 'awaiting_approval'").fetchall()
        conn.execute("UPDATE events SET actor = 'someone-else' WHERE id = ?", (target,))
    bad = guard_cli("ledger", "verify", "--db", str(db_path))
    assert bad.returncode == 1
    assert f"event {target} (stream run:" in bad.stdout


def test_db_status_fails_until_db_upgrade_creates_the_schema(tmp_path: Path, runner: CliRunner) -> None:
    db = str(tmp_path / "new.db")
    assert runner.invoke(app, ["db", "status", "--db", db]).exit_code == 1
    upgraded = runner.invoke(app, ["db", "upgrade", "--db", db])
    assert upgraded.exit_code == 0, upgraded.output
    status = runner.invoke(app, ["db", "status", "--db", db])
    assert status.exit_code == 0 and HEAD_REVISION in status.output


def test_a_paused_team_has_its_calls_denied_until_it_is_unpaused(db_path: Path, runner: CliRunner) -> None:
    guard = Guard(policies=POLICIES, db=str(db_path), log_level="error")
    ran: list[str] = []

    def find_contact(email: str) -> None:
        ran.append(email)

    tool = guard.tool(find_contact, name="crm.find_contact")
    try:
        with guard.run("onboarding"):  # open before the pause: a paused team opens no new run
            paused = runner.invoke(
                app,
                ["pause", "--team", "onboarding", "--reason", "incident 42", "--as", "oncall", "--db", str(db_path)],
            )
            assert paused.exit_code == 0, paused.output
            with pytest.raises(CallDenied, match="incident 42"):
                tool(email="ada@example.com")
            lifted = runner.invoke(app, ["unpause", "--team", "onboarding", "--reason", "fixed", "--db", str(db_path)])
            assert lifted.exit_code == 0, lifted.output
            tool(email="ada@example.com")
    finally:
        guard.close()
    assert ran == ["ada@example.com"]
    again = runner.invoke(app, ["unpause", "--team", "onboarding", "--reason", "fixed", "--db", str(db_path)])
    assert again.exit_code == 1 and "no active pause" in again.output


def test_pause_needs_exactly_one_target(db_path: Path, runner: CliRunner) -> None:
    both = runner.invoke(app, ["pause", "--team", "a", "--tool", "b", "--reason", "x", "--db", str(db_path)])
    assert both.exit_code == 2


def test_pauses_lists_each_pause_in_force_with_its_owners_and_the_history_of_who_paused_and_lifted_when_and_why(
    db_path: Path, runner: CliRunner
) -> None:
    Guard(policies=POLICIES, db=str(db_path), log_level="error").close()  # creates the ledger
    base = ["--db", str(db_path), "--policies", str(POLICIES)]
    for argv in (
        ["pause", "--team", "onboarding", "--reason", "invoices doubled", "--as", "ops-lead"],
        ["unpause", "--team", "onboarding", "--reason", "duplicates voided", "--as", "ops-lead"],
        ["pause", "--tool", "email.*", "--in-team", "onboarding", "--reason", "bounces", "--as", "oncall"],
    ):
        assert runner.invoke(app, [*argv, "--db", str(db_path)]).exit_code == 0
    shown = runner.invoke(app, ["pauses", *base, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    [active] = data["active"]
    assert (active["target"], active["paused_by"], active["reason"]) == ("email.*", "oncall", "bounces")
    assert active["owners"] and all({"owner", "backup"} <= set(o) for o in active["owners"])
    assert [(h["action"], h["by"], h["reason"]) for h in data["history"]] == [
        ("paused", "ops-lead", "invoices doubled"),
        ("lifted", "ops-lead", "duplicates voided"),
        ("paused", "oncall", "bounces"),
    ]
    text = runner.invoke(app, ["pauses", *base, "--last", "1"])
    assert "owners " in text.output and "history:" in text.output
    assert "bounces" in text.output.split("history:")[1] and "duplicates voided" not in text.output


def test_unpause_staged_lets_one_call_through_then_holds_until_confirm_stage_and_pauses_shows_the_restart(
    db_path: Path, runner: CliRunner
) -> None:
    guard = Guard(policies=POLICIES, db=str(db_path), log_level="error")
    ran: list[str] = []

    def find_contact(email: str) -> None:
        ran.append(email)

    tool = guard.tool(find_contact, name="crm.find_contact")
    base = ["--team", "onboarding", "--db", str(db_path), "--as", "ops-lead"]
    try:
        with guard.run("onboarding"):
            assert runner.invoke(app, ["pause", *base, "--reason", "dupes"]).exit_code == 0
            staged = runner.invoke(app, ["unpause", *base, "--reason", "fixed", "--staged", "1,10"])
            assert staged.exit_code == 0 and "stage 1 lets 1 call(s) through" in staged.output, staged.output
            tool(email="a@x.io")
            with pytest.raises(CallDenied, match="holds after stage 1 of 1,10"):
                tool(email="b@x.io")
            shown = runner.invoke(app, ["pauses", "--db", str(db_path), "--policies", str(POLICIES)])
            assert "holding at stage 1, 1 call(s) through" in shown.output
            assert "restart 1 stage 1 holding" in shown.output  # the step is in the history
            confirmed = runner.invoke(app, ["unpause", *base, "--reason", "one fine", "--confirm-stage"])
            assert confirmed.exit_code == 0 and "next stage" in confirmed.output
            tool(email="b@x.io")
    finally:
        guard.close()
    assert ran == ["a@x.io", "b@x.io"]
    bad = runner.invoke(app, ["unpause", *base, "--reason", "x", "--staged", "1,ten"])
    assert bad.exit_code == 2


@pytest.mark.parametrize(
    "command",
    [
        [b"pause", b"--team", b"onboarding", b"--reason", b"stop \xff now"],
        [b"runs", b"show", b"run-\xe9"],
        [b"incident", b"open", b"--team", b"onboarding", b"--title", b"caf\xe9", b"--since", b"1h"],
    ],
    ids=["pause-reason", "run-id", "incident-title"],
)
def test_an_argument_that_is_not_utf8_is_a_usage_error_naming_it_and_writes_nothing(
    ledger: Ledger, command: list[bytes]
) -> None:
    """A byte string that is not UTF-8 on the command line (a Latin-1 terminal, a pasted byte) reaches Python as
    a lone surrogate, which no ledger can store: the command exits 2 naming the argument, before it opens the
    ledger, instead of a UnicodeEncodeError traceback from the database driver."""
    env = {**os.environ, "GUARD_POLICY_DIR": str(POLICIES), "GUARD_DATABASE_URL": ledger.url}
    cli = subprocess.run(
        [sys.executable.encode(), b"-m", b"guard", *command], capture_output=True, env=env, timeout=60, check=False
    )
    err = cli.stderr.decode("utf-8", "backslashreplace")
    assert cli.returncode == 2, err
    assert "Traceback" not in err and "is not UTF-8 text" in err and "\\x" in err
    assert ledger.active_pauses() == [] and ledger.list_runs() == []


def test_json_nested_too_deep_to_parse_is_a_usage_error_of_explain_and_of_an_edit_not_a_traceback(
    waiting: tuple[Guard, str, str], db_path: Path
) -> None:
    """`--args` of `guard policy explain` and `--edit` of `guard approvals approve` nested thousands of levels deep
    make the JSON parser raise RecursionError (not a ValueError): each is refused as unreadable JSON (exit 2), and
    the edit decides nothing."""
    guard, _, approval_id = waiting
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    explain = guard_cli("policy", "explain", "billing.create_invoice", "--team", "onboarding", "--args", deep)
    edit = guard_cli("approvals", "approve", approval_id, "--as", "ops-lead", "--edit", deep, "--db", str(db_path))
    for done in (explain, edit):
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "nested too deep" in done.stderr
    approval = guard.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "pending" and guard.ledger.decisions_of(approval_id) == []
