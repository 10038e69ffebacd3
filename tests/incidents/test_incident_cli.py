"""`guard incident ...` over a real ledger (both backends): open on a window, tag by filter, history, list, close,
and a time that is not one is a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_run_support import CONTACTS, BadRun
from typer.testing import CliRunner

from guard.cli.app import app

runner = CliRunner()


def _guard(ledger_url: str, *args: str) -> str:
    out = runner.invoke(app, [*args, "--db", ledger_url], env={"GUARD_OPERATOR": "olga"})
    assert out.exit_code == 0, out.output
    return out.output


@pytest.mark.sqlite_only  # any CLI command on a PostgreSQL URL leaves a psycopg connection open (runs list too)
def test_the_cli_opens_on_a_window_tags_by_filter_keeps_history_lists_and_closes(
    bad_run: BadRun, ledger_url: str
) -> None:
    opened = json.loads(
        _guard(
            ledger_url,
            "incident",
            "open",
            "--team",
            "contacts",
            "--tool",
            "crm.*",
            "--since",
            "2h",
            "--title",
            "statuses",
            "--json",
        )
    )
    inc = opened["incident_id"]
    assert (opened["opened_by"], opened["team"], opened["scope"]["tools"]) == ("olga", "contacts", ["crm.*"])
    said = _guard(ledger_url, "incident", "tag", inc, "wrong", "--judged", "none", "--note", "paid")
    assert f"{CONTACTS} record(s) matched, {CONTACTS} judged wrong" in said
    assert f"{CONTACTS} records changed in 1 system: {CONTACTS} wrong" in said
    history = json.loads(_guard(ledger_url, "incident", "history", inc, "--json"))
    assert len(history) == CONTACTS and {h["by"] for h in history} == {"olga"}
    assert inc in _guard(ledger_url, "incident", "list")
    csv = _guard(ledger_url, "incident", "export", inc, "--format", "csv")
    assert csv.count("\n") == CONTACTS + 1 and ",wrong,olga,paid" in csv
    _guard(ledger_url, "incident", "close", inc, "--note", "restored by hand")
    shown = _guard(ledger_url, "incident", "show", inc)
    assert "closed: restored by hand" in shown and "Looks wrong: 12 in crm." in shown


@pytest.mark.sqlite_only  # any CLI command on a PostgreSQL URL leaves a psycopg connection open (runs list too)
def test_a_time_that_is_not_one_is_a_usage_error(ledger_url: str, bad_run: BadRun) -> None:
    out = runner.invoke(
        app, ["incident", "open", "--team", "contacts", "--since", "yesterday-ish", "--title", "t", "--db", ledger_url]
    )
    assert out.exit_code == 2 and "not a time" in out.output


@pytest.mark.sqlite_only  # any CLI command on a PostgreSQL URL leaves a psycopg connection open (runs list too)
def test_the_blast_radius_groups_records_by_the_systems_the_teams_policy_names(
    bad_run: BadRun, ledger_url: str
) -> None:
    policy = bad_run.policies / "contacts.yaml"
    policy.write_text(
        policy.read_text() + '\nsystems:\n  salesforce: {tools: ["crm.*"]}\n  mailchimp: {tools: ["mail.*"]}\n'
    )
    inc = json.loads(
        _guard(ledger_url, "incident", "open", "--team", "contacts", "--since", "2h", "--title", "t", "--json")
    )["incident_id"]
    named = json.loads(_guard(ledger_url, "incident", "export", inc, "--policies", str(bad_run.policies)))
    assert {r["system"] for r in named["calls"]} == set(named["by_system"]) == {"salesforce", "mailchimp"}
    shown = _guard(ledger_url, "incident", "show", inc, "--policies", str(bad_run.policies))
    assert f"{2 * CONTACTS} records changed in 2 systems" in shown and "salesforce" in shown


@pytest.mark.sqlite_only  # any CLI command on a PostgreSQL URL leaves a psycopg connection open (runs list too)
def test_an_owner_who_is_not_a_reviewer_of_the_team_is_a_usage_error_and_opens_nothing(
    bad_run: BadRun, ledger_url: str, tmp_path: Path
) -> None:
    """`--owner` must be a reviewer of the team per `--policies`: a made-up name is refused (exit 2) naming who may
    own it; without a policy folder to check against, an owner is refused too; a reviewer of the team is taken."""
    scope = ["incident", "open", "--team", "contacts", "--since", "2h", "--title", "statuses", "--db", ledger_url]
    policies = ["--policies", str(bad_run.policies)]
    refused = runner.invoke(app, [*scope, *policies, "--owner", "maria"])
    assert refused.exit_code == 2, refused.output
    assert "owner maria is not a reviewer of team contacts" in refused.output and "olga, rita, tess" in refused.output
    unchecked = runner.invoke(app, [*scope, "--policies", str(tmp_path / "none"), "--owner", "rita"])
    assert unchecked.exit_code == 2 and "no policy folder" in unchecked.output
    assert bad_run.book.list() == []
    opened = json.loads(_guard(ledger_url, *scope[:-2], *policies, "--owner", "rita", "--json"))
    assert opened["owner"] == "rita"
