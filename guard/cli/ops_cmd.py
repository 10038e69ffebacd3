"""`guard pause` / `guard unpause` / `guard pauses`: the kill switch for a team, a tool or a run, and its record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from guard.cli.common import (
    DbOption,
    JsonFlag,
    PoliciesDir,
    Who,
    echo,
    emit,
    fail,
    guarded_command,
    open_ledger,
    operator_name,
    policy_dir,
    when,
)

if TYPE_CHECKING:
    from guard.ledger import Scope

TeamOpt = Annotated[str | None, typer.Option("--team", help="Pause a whole team.")]
ToolOpt = Annotated[str | None, typer.Option("--tool", help="Pause a tool (glob, e.g. 'email.*').")]
RunOpt = Annotated[str | None, typer.Option("--run", help="Pause one run.")]


def _target(team: str | None, tool: str | None, run: str | None) -> tuple[Scope, str]:
    chosen = [(s, t) for s, t in (("team", team), ("tool", tool), ("run", run)) if t]
    if len(chosen) != 1:
        fail("say exactly one of --team, --tool or --run", 2)
    scope, target = chosen[0]
    return scope, target  # pyright: ignore[reportReturnType]


@guarded_command
def pause(
    reason: Annotated[str, typer.Option(help="Why: shown to the agent and the on-call.")],
    team: TeamOpt = None,
    tool: ToolOpt = None,
    run: RunOpt = None,
    tool_team: Annotated[str | None, typer.Option("--in-team", help="Limit a tool pause to a team.")] = None,
    who: Who = None,
    db: DbOption = None,
) -> None:
    """Stop new calls at once: every matching call is denied until `guard unpause`."""
    scope, target = _target(team, tool, run)
    pause_id = open_ledger(db).pause(scope, target, reason=reason, by=operator_name(who), team=tool_team)
    echo(f"paused {scope} {target} (pause {pause_id}); lift with `guard unpause --{scope} {target}`")


@guarded_command
def unpause(
    reason: Annotated[str, typer.Option(help="Why it is safe to go on: kept with the pause.")],
    team: TeamOpt = None,
    tool: ToolOpt = None,
    run: RunOpt = None,
    tool_team: Annotated[str | None, typer.Option("--in-team", help="Lift only that team's pauses.")] = None,
    staged: Annotated[
        str | None,
        typer.Option(
            "--staged",
            help="Restart in stages instead, e.g. 1,10,100: each stage lets that many calls through, "
            "then the pause holds until an owner confirms (--confirm-stage) or --quiet passes; "
            "after the last, normal volume. Any failure pauses again at once.",
        ),
    ] = None,
    quiet: Annotated[
        str | None,
        typer.Option(
            "--quiet",
            help="With --staged: a held stage moves on by itself after this long with no failure (e.g. 10m).",
            show_default="only on confirmation",
        ),
    ] = None,
    confirm_stage: Annotated[
        bool, typer.Option("--confirm-stage", help="Confirm the held stage of a staged restart: the next stage passes.")
    ] = False,
    who: Who = None,
    db: DbOption = None,
) -> None:
    """Lift the pauses on a team, tool or run: at once, in stages (--staged), or confirm a held stage."""
    scope, target = _target(team, tool, run)
    ledger = open_ledger(db)
    if confirm_stage:
        state = ledger.confirm_restart(scope, target, by=operator_name(who), reason=reason, team=tool_team)
        echo(
            f"{scope} {target}: "
            + (
                "every stage passed, the pause is lifted"
                if state == "done"
                else "stage confirmed, the next stage lets calls through"
            )
        )
        return
    if staged is not None:
        from guard.policy import parse_duration

        try:
            stages = [int(n) for n in staged.split(",")]
            seconds = None if quiet is None else parse_duration(quiet)
        except ValueError as exc:
            fail(f"--staged takes call counts such as 1,10,100 and --quiet a duration such as 10m ({exc})", 2)
        restart = ledger.start_restart(
            scope, target, stages=stages, by=operator_name(who), reason=reason, team=tool_team, quiet=seconds
        )
        echo(
            f"staged restart {restart} of {scope} {target}: stage 1 lets {stages[0]} call(s) through, then the pause "
            f"holds until `guard unpause --{scope} {target} --confirm-stage --reason ...`"
        )
        return
    n = ledger.unpause(scope, target, by=operator_name(who), reason=reason, team=tool_team)
    if n == 0:
        fail(f"no active pause on {scope} {target}")
    echo(f"lifted {n} pause(s) on {scope} {target}")


@guarded_command
def pauses(
    team: Annotated[str | None, typer.Option("--team", help="Only this team's pauses and history.")] = None,
    last: Annotated[
        int,
        typer.Option(
            "--last",
            min=0,
            help="How many pause and lift events of the history to show, newest last.",
            show_default=True,
        ),
    ] = 20,
    db: DbOption = None,
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """The pauses in force with their owners (from the team's policy), then the history: every pause and lift,
    who, when and why."""
    ledger = open_ledger(db)
    owners = _owners_by_pause(policy_dir(policies))
    in_force = ledger.active_pauses(None if team is None else [team])
    active: list[dict[str, Any]] = [{**p, "owners": owners(p)} for p in in_force]
    history = [
        _history_row(e.entity, e.at, e.actor, e.to_state, e.detail) for e in ledger.pause_events(team, restarts=True)
    ]
    history = history[-last:] if last else []
    restarts = ledger.restarts(None if team is None else [team])
    if as_json:
        emit({"active": active, "history": history, "restarts": restarts})
        return
    for p in active:
        who = " / ".join(f"{o['owner']} (backup {o['backup']})" for o in p["owners"]) or "nobody named"
        echo(
            f"{p['id']:<4} {p['scope']:<5} {p['target']:<24} by {p['paused_by']} at {when(p['at'])}: "
            f"{p['reason']}; owners {who}"
        )
    if not active:
        echo("no active pauses")
    for r in restarts:
        stages = ",".join(map(str, r["stages"]))
        echo(
            f"restart {r['id']} of {r['scope']} {r['target']} ({stages}) by {r['started_by']}: {r['state']} at stage "
            f"{r['stage'] + 1}, {r['passed']} call(s) through"
        )
    if history:
        echo("history:")
    for h in history:
        echo(f"  {when(h['at'])} {h['action']:<7} {h['scope']} {h['target']} by {h['by']}: {h['reason']}")


def _history_row(entity: str, at: float, actor: str, to_state: str, detail: str) -> dict[str, Any]:
    facts = json.loads(detail)
    action = to_state if entity == "pause" else f"restart {facts.get('restart')} stage {facts.get('stage')} {to_state}"
    return {
        "at": at,
        "action": action,
        "by": actor,
        "scope": facts.get("scope"),
        "target": facts.get("target"),
        "team": facts.get("team"),
        "reason": facts.get("reason"),
        "ids": facts.get("ids", [facts.get("id")]),
    }


def _owners_by_pause(folder: Path) -> Callable[[dict[str, Any]], list[dict[str, str]]]:
    """`pause -> [{owner, backup}]` from the policies in `folder`; empty for a team without a loadable policy (the
    list still shows the pause: a broken policy file must not hide a pause in force)."""
    from guard.policy import Policy, PolicySet

    loaded: dict[str, Policy] = dict(PolicySet.load_dir(folder).policies) if folder.is_dir() else {}

    def owners(p: dict[str, Any]) -> list[dict[str, str]]:
        policy = loaded.get(p["team"] or "")
        if policy is None:
            return []
        found = policy.owners_of(p["target"] if p["scope"] == "tool" else None)
        return [{"owner": o.owner, "backup": o.backup} for o in found]

    return owners
