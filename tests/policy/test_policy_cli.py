"""`guard policy ...` through typer's runner: output, JSON mode and exit codes (0 ok, 1 failed, 2 usage)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from guard.cli.policy_cmd import app

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
BAD = Path(__file__).parent / "bad"
runner = CliRunner()


def test_validate_ok() -> None:
    result = runner.invoke(app, ["validate", str(POLICIES / "onboarding.yaml")])
    assert result.exit_code == 0
    assert result.output.startswith(f"ok  {POLICIES / 'onboarding.yaml'}  team=onboarding rules=")


def test_validate_bad_exits_1_with_the_error_line() -> None:
    result = runner.invoke(app, ["validate", str(POLICIES / "growth.yaml"), str(BAD / "irreversible_auto.yaml")])
    assert result.exit_code == 1
    assert f"{BAD / 'irreversible_auto.yaml'}:14: rules[3].approval:" in result.output


def test_validate_json() -> None:
    result = runner.invoke(app, ["validate", "--json", str(BAD / "syntax.yaml")])
    assert result.exit_code == 1
    assert json.loads(result.output)[0]["line"] == 5


def test_explain_shows_rules_verdict_gate_and_redacts_secrets() -> None:
    args = json.dumps({"amount_cents": 60000, "card_number": "4242424242424242"})
    result = runner.invoke(
        app,
        [
            "explain",
            "billing.create_invoice",
            "--team",
            "onboarding",
            "--args",
            args,
            "--policies",
            str(POLICIES),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "verdict: approve  class: compensable  rule: big-invoice" in result.output
    assert "gate: roles finance, quorum 1" in result.output
    assert "4242424242424242" not in result.output


def test_explain_json() -> None:
    result = runner.invoke(
        app,
        [
            "explain",
            "billing.create_invoice",
            "--team",
            "onboarding",
            "--json",
            "--args",
            '{"amount_cents": "60000"}',
            "--policies",
            str(POLICIES),
        ],
    )
    data = json.loads(result.output)
    assert (data["verdict"], data["rule"]) == ("deny", "big-invoice")
    assert any(rule["outcome"] == "indeterminate" for rule in data["rules"])


def test_explain_bad_json_is_a_usage_error() -> None:
    result = runner.invoke(
        app, ["explain", "x", "--team", "onboarding", "--args", "{nope", "--policies", str(POLICIES)]
    )
    assert result.exit_code == 2
    assert "--args is not valid JSON" in result.output


def test_explain_unknown_team_is_a_usage_error() -> None:
    result = runner.invoke(app, ["explain", "x", "--team", "nobody", "--policies", str(POLICIES)])
    assert result.exit_code == 2
    assert "no policy for team 'nobody'" in result.output


def test_test_runs_every_team(monkeypatch: object) -> None:
    result = runner.invoke(app, ["test", "--policies", str(POLICIES)])
    assert result.exit_code == 0, result.output
    teams = [p for p in POLICIES.glob("*.yaml") if not p.name.endswith(".cases.yaml")]
    assert len(teams) >= 4 and f"0 failed, 0 error(s) in {len(teams)} team(s)" in result.output


def test_test_reports_failures_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "onboarding.yaml").write_bytes((POLICIES / "onboarding.yaml").read_bytes())
    (tmp_path / "onboarding.cases.yaml").write_text("cases:\n  - {tool: email.send_welcome, expect: allow}\n")
    result = runner.invoke(app, ["test", "onboarding", "--policies", str(tmp_path)])
    assert result.exit_code == 1
    assert "onboarding.cases.yaml:2: email.send_welcome -> allow: expected allow, got approve" in result.output
    data = json.loads(runner.invoke(app, ["test", "--json", "--policies", str(tmp_path)]).output)
    assert data["failed"] == 1


def test_schema_is_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) == {"team", "rules"}


def test_validate_on_the_policies_glob_checks_cases_files_as_cases_and_exits_0() -> None:
    """`guard policy validate policies/*.yaml` (the README's first command) passes on the shipped files."""
    files = sorted(str(p) for p in POLICIES.glob("*.yaml"))
    assert any(f.endswith(".cases.yaml") for f in files)
    result = runner.invoke(app, ["validate", *files])
    assert result.exit_code == 0, result.output
    assert f"ok  {POLICIES / 'onboarding.cases.yaml'}  cases of team onboarding: " in result.output


def test_validate_refuses_a_cases_file_that_names_a_rule_the_policy_lacks(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("team: t\nrules:\n  - {name: r, tools: [a], class: read}\n")
    (tmp_path / "t.cases.yaml").write_text("cases:\n  - {tool: a, args: {}, expect: allow, rule: nope}\n")
    result = runner.invoke(app, ["validate", str(tmp_path / "t.cases.yaml")])
    assert result.exit_code == 1
    assert result.output.startswith(f"{tmp_path / 't.cases.yaml'}:2: cases[0].rule: the policy has no rule 'nope'")
