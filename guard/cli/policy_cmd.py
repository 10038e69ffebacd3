# pyright: strict
"""`guard policy ...`: validate, explain, test and publish the schema of team policies.

Exit codes: 0 ok, 1 a check failed (invalid policy, failing case), 2 usage error (bad arguments, bad
JSON, unknown team). Every command takes `--json` for machine-readable output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from guard.cli.common import JsonFlag, PoliciesDir, echo, emit, policy_dir
from guard.errors import PolicyError
from guard.policy import CaseReport, Decision, PolicySet, cases_path, load_policy, policy_json_schema, run_cases

app = typer.Typer(help="Check and explain team policies (policies/<team>.yaml).", no_args_is_help=True)


def _usage(message: str, as_json: bool) -> typer.Exit:
    if as_json:
        emit({"ok": False, "error": message})
    else:
        echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _error_json(err: PolicyError) -> dict[str, Any]:
    return {
        "file": err.fields["file"],
        "line": err.fields["line"],
        "field": err.fields["field"],
        "reason": err.fields["reason"],
        "message": str(err),
    }


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Policy files to check.")], as_json: JsonFlag = False
) -> None:
    """Check policy files: print `ok` or `file:line: field: reason` per file. Exit 1 if any is invalid.

    A `<team>.cases.yaml` among them (as `policies/*.yaml` gives) is checked as the cases file of its team's
    policy: its format and the rules it names; whether the cases pass is `guard policy test`.
    """
    results: list[dict[str, Any]] = []
    for file in files:
        try:
            if file.name.endswith((".cases.yaml", ".cases.yml")):
                report = run_cases(_policy_of(file))
                results.append({"ok": True, "file": str(file), "team": report.team, "cases": len(report.results)})
                if not as_json:
                    echo(f"ok  {file}  cases of team {report.team}: {len(report.results)}")
                continue
            policy = load_policy(file)
        except PolicyError as err:
            results.append({"ok": False, **_error_json(err)})
            if not as_json:
                echo(str(err))
            continue
        results.append(
            {
                "ok": True,
                "file": str(file),
                "team": policy.team,
                "rules": len(policy.rules),
                "version": policy.version,
            }
        )
        if not as_json:
            echo(f"ok  {file}  team={policy.team} rules={len(policy.rules)} version={policy.version}")
    if as_json:
        emit(results)
    if not all(result["ok"] for result in results):
        raise typer.Exit(1)


def _policy_of(cases_file: Path) -> Path:
    """`policies/billing.cases.yaml` -> `policies/billing.yaml` (the inverse of `cases_path`)."""
    stem, _, suffix = cases_file.name.rpartition(".cases.")
    return cases_file.with_name(f"{stem}.{suffix}")


@app.command()
def explain(
    tool: Annotated[str, typer.Argument(help="Tool name, e.g. billing.create_invoice.")],
    team: Annotated[str, typer.Option("--team", help="Team whose policy decides.")],
    args: Annotated[str, typer.Option("--args", help="Call arguments as a JSON object.")] = "{}",
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Show how a call would be decided: every rule's outcome, the winner, verdict, gate, retry."""
    try:
        call_args: Any = json.loads(args)
    except json.JSONDecodeError as exc:
        raise _usage(
            f"--args is not valid JSON ({exc}): pass an object like '{{\"amount_cents\": 100}}'", as_json
        ) from None
    except RecursionError:  # the parser's own depth limit, below any a call could pass
        raise _usage(
            "--args is nested too deep to read: flatten it (a call takes at most 64 levels)", as_json
        ) from None
    if not isinstance(call_args, dict):
        raise _usage("--args must be a JSON object of arguments, like '{\"amount_cents\": 100}'", as_json)
    try:
        policy = PolicySet.load_dir(policy_dir(policies)).get(team)
    except PolicyError as err:
        if as_json:
            emit({"ok": False, "error": _error_json(err)})
        else:
            echo(f"error: {err}", err=True)
        raise typer.Exit(2 if err.fields["field"] == "team" and err.fields["line"] is None else 1) from None
    decision, traces = policy.explain(tool, call_args)  # pyright: ignore[reportUnknownArgumentType]
    from guard.canonical import redact

    shown = redact(call_args, decision.secret_fields)
    data = {
        "team": team,
        "tool": tool,
        "args": shown,
        **_decision_json(decision),
        "system": policy.system_of(tool),
        "retry_from": policy.retry_sources(decision),
        "rules": [{"rule": t.rule, "line": t.line, "outcome": t.outcome, "detail": t.detail} for t in traces],
    }
    if as_json:
        emit(data)
        return
    echo(f"{tool} (team {team}, policy {policy.source} {policy.version})")
    echo(f"args: {json.dumps(shown)}")
    for trace in traces:
        mark = {"matched": "+", "conditions failed": "-", "indeterminate": "?"}.get(trace.outcome, " ")
        echo(f"  {mark} {trace.rule:<24} line {trace.line}: {trace.outcome}: {trace.detail}")
    echo(f"verdict: {decision.verdict}  class: {decision.side_effect}  rule: {decision.rule}")
    echo(f"reason: {decision.reason}")
    if decision.shadow is not None:
        echo(f"shadow (not enforced): would be {decision.shadow}")
    shadows = [rule.name for rule in decision.stop.fields if rule.mode == "shadow"]
    if shadows:
        echo(f"shadow stop rules (not enforced, recorded when they would trip): {', '.join(shadows)}")
    if decision.approval is not None:
        gate = decision.approval
        echo(f"gate: roles {', '.join(gate.roles)}, quorum {gate.quorum}, expires after {gate.expires_after:g}s")
    retry = decision.retry
    echo(
        f"retry: {retry.attempts} attempt(s), "
        f"backoff {retry.backoff_initial:g}s x{retry.backoff_multiplier:g} "
        f"up to {retry.backoff_max:g}s, timeout {retry.timeout if retry.timeout is not None else 'none'}"
    )
    echo(f"system: {policy.system_of(tool) or 'none (policy `systems:` names no system holding this tool)'}")
    echo("retry from: " + "; ".join(f"{key} {where}" for key, where in policy.retry_sources(decision).items()))
    echo(f"on failure: {decision.on_failure}")
    limits = [f"the same call at most {decision.stop.repeats} time(s) in a row"] if decision.stop.repeats else []
    limits += [f"at most {n} call(s) of {glob} per run" for glob, n in decision.stop.max_calls]
    limits += [
        f"at most {calls} call(s) of {glob} per {per:g}s for the team" for glob, calls, per in decision.stop.rate
    ]
    if limits:
        echo(f"stop rules: {'; '.join(limits)}")


@app.command("test")
def cases_cmd(
    teams: Annotated[list[str] | None, typer.Argument(help="Teams to test.", show_default="all")] = None,
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Run each team's cases file (<team>.cases.yaml): print failures and a summary. Exit 1 on any."""
    directory = policy_dir(policies)
    if not directory.is_dir():
        raise _usage(f"policy folder {directory} does not exist: pass --policies or set GUARD_POLICY_DIR", as_json)
    names = teams or sorted(p.stem for p in directory.glob("*.yaml") if not p.name.endswith(".cases.yaml"))
    reports: list[CaseReport] = []
    errors: list[PolicyError] = []
    for team in names:
        path = directory / f"{team}.yaml"
        if not cases_path(path).exists() and path.exists():
            errors.append(
                PolicyError(
                    file=str(cases_path(path)),
                    line=None,
                    field="",
                    reason=f"team {team} has no cases file: write {cases_path(path).name}",
                )
            )
            continue
        try:
            reports.append(run_cases(path))
        except PolicyError as err:
            errors.append(err)
    failed = sum(len(r.failures) for r in reports)
    total = sum(len(r.results) for r in reports)
    if as_json:
        emit(
            {
                "ok": not failed and not errors,
                "cases": total,
                "failed": failed,
                "errors": [_error_json(e) for e in errors],
                "failures": [
                    {
                        "team": r.team,
                        "file": r.cases_file,
                        "line": f.line,
                        "name": f.name,
                        "differences": list(f.differences),
                        "reason": f.decision.reason,
                    }
                    for r in reports
                    for f in r.failures
                ],
            }
        )
    else:
        for err in errors:
            echo(str(err))
        for report in reports:
            for failure in report.failures:
                echo(
                    f"FAIL {report.cases_file}:{failure.line}: {failure.name}: "
                    f"{'; '.join(failure.differences)} ({failure.decision.reason})"
                )
        echo(f"{total - failed} passed, {failed} failed, {len(errors)} error(s) in {len(names)} team(s)")
    if failed or errors:
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the policy file format (for editors and CI)."""
    emit(policy_json_schema())


def _decision_json(decision: Decision) -> dict[str, Any]:
    gate = decision.approval
    retry = decision.retry
    return {
        "verdict": str(decision.verdict),
        "class": decision.side_effect and str(decision.side_effect),
        "rule": decision.rule,
        "reason": decision.reason,
        "matched": list(decision.matched),
        "approval": None
        if gate is None
        else {"roles": list(gate.roles), "quorum": gate.quorum, "expires_after": gate.expires_after},
        "retry": {
            "attempts": retry.attempts,
            "backoff_initial": retry.backoff_initial,
            "backoff_max": retry.backoff_max,
            "backoff_multiplier": retry.backoff_multiplier,
            "timeout": retry.timeout,
        },
        "on_failure": str(decision.on_failure),
        "shadow": decision.shadow,
        "policy_version": decision.policy_version,
        "secret_fields": sorted(decision.secret_fields),
        "stop": {
            "repeats": decision.stop.repeats,
            "max_calls": dict(decision.stop.max_calls),
            "rate": {glob: {"calls": calls, "per": per} for glob, calls, per in decision.stop.rate},
        },
    }
