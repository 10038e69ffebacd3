"""`guard pause` / `guard unpause`: the kill switch for a team, a tool or a run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from guard.cli.common import (
    DbOption,
    JsonFlag,
    Who,
    echo,
    emit,
    fail,
    guarded_command,
    open_ledger,
    operator_name,
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
def pause(reason: Annotated[str, typer.Option(help="Why: shown to the agent and the on-call.")],
          team: TeamOpt = None, tool: ToolOpt = None, run: RunOpt = None,
          tool_team: Annotated[str | None, typer.Option("--in-team", help="Limit a tool pause to a team.")] = None,
          who: Who = None, db: DbOption = None) -> None:
    """Stop new calls at once: every matching call is denied until `guard unpause`."""
    scope, target = _target(team, tool, run)
    pause_id = open_ledger(db).pause(scope, target, reason=reason, by=operator_name(who), team=tool_team)
    echo(f"paused {scope} {target} (pause {pause_id}); lift with `guard unpause --{scope} {target}`")


@guarded_command
def unpause(reason: Annotated[str, typer.Option(help="Why it is safe to go on: kept with the pause.")],
            team: TeamOpt = None, tool: ToolOpt = None, run: RunOpt = None,
            tool_team: Annotated[str | None, typer.Option("--in-team", help="Lift only that team's pauses.")] = None,
            who: Who = None, db: DbOption = None) -> None:
    """Lift the pauses on a team, tool or run."""
    scope, target = _target(team, tool, run)
    n = open_ledger(db).unpause(scope, target, by=operator_name(who), reason=reason, team=tool_team)
    if n == 0:
        fail(f"no active pause on {scope} {target}")
    echo(f"lifted {n} pause(s) on {scope} {target}")


@guarded_command
def pauses(db: DbOption = None, as_json: JsonFlag = False) -> None:
    """List the active pauses."""
    active = open_ledger(db).active_pauses()
    if as_json:
        emit(active)
        return
    for p in active:
        echo(f"{p['id']:<4} {p['scope']:<5} {p['target']:<24} by {p['paused_by']} at {when(p['at'])}: "
             f"{p['reason']}")
    if not active:
        echo("no active pauses")
