"""`guard drill --team T`: a recovery drill: a scripted bad run against the team's stand-in tools, timed from the
first call to the pause, to the blast radius found, to clean state; the three times printed and kept in the ledger.

The stand-ins are the team policy's `drill: {stand_ins: module:function}`, or `--stand-ins`. `--history` lists the
team's drills kept in the ledger instead of running one. Exit 1 when the drill does not reach clean state (it is
kept as failed, with the step and why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    operator_name,
    policy_dir,
)


@guarded_command
def drill(
    team: Annotated[str, typer.Option("--team", help="The team whose recovery is drilled.")],
    stand_ins: Annotated[
        str | None,
        typer.Option(
            "--stand-ins",
            help="module:function registering the stand-in tools on the drill's Guard and returning the bad run.",
            show_default="the team policy's drill.stand_ins",
        ),
    ] = None,
    snapshots: Annotated[
        Path, typer.Option("--snapshots", help="Where the drill's incident snapshot is written.")
    ] = Path("drill-snapshots"),
    history: Annotated[
        bool, typer.Option("--history", help="List the team's drills kept in the ledger instead of running one.")
    ] = False,
    who: Who = None,
    db: DbOption = None,
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Drill a team's recovery: pause -> blast radius found -> clean state, each step timed and kept in the ledger.

    The drill pauses the team for real (its own stop rules do): run it on a staging or scratch ledger."""
    if history:
        _history(team, db, as_json)
        return
    from guard.drills import load_stand_ins, run_drill
    from guard.runtime import Guard

    guard = Guard(policies=policy_dir(policies), db=db, log_level="error")
    try:
        policy = guard.policies.policies.get(team)
        if policy is None:
            fail(f"team {team} has no valid policy in {policy_dir(policies)}", 2)
        spec = stand_ins or policy.drill_stand_ins
        if spec is None:
            fail(
                f"team {team} declares no stand-in tools: add `drill: {{stand_ins: module:function}}` to its policy "
                "or pass --stand-ins",
                2,
            )
        result = run_drill(guard, team, load_stand_ins(spec), by=operator_name(who), snapshot_dir=snapshots)
    finally:
        guard.close()
    if as_json:
        emit(result.to_json())
        return
    echo(result.summary())
    echo(f"  pause:              {result.pause_s:.3f} s")
    echo(f"  blast radius found: {result.radius_s:.3f} s")
    echo(f"  clean state:        {result.clean_s:.3f} s")
    for system, states in result.by_system.items():
        echo(f"  {system}: " + ", ".join(f"{n} {state}" for state, n in states.items()))


def _history(team: str, db: str | None, as_json: bool) -> None:
    from guard.cli.common import open_ledger

    drills = open_ledger(db).drills(team)
    if as_json:
        emit([d.to_dict() for d in drills])
        return
    if not drills:
        echo(f"no drills of team {team} yet: `guard drill --team {team}`")
    for d in drills:

        def shown(t: float | None) -> str:
            return "-" if t is None else f"{t:.3f} s"

        echo(
            f"drill {d.id}  {d.state:<6}  by {d.drilled_by}  pause {shown(d.pause_s)}  radius {shown(d.radius_s)}  "
            f"clean {shown(d.clean_s)}  records {d.records}"
        )
