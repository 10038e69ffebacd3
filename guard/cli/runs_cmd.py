"""`guard runs ...`: list runs and tell one run's whole story from the ledger."""

from __future__ import annotations

from typing import Annotated

import typer

from guard.cli.choices import RUN_STATES
from guard.cli.common import DbOption, JsonFlag, echo, emit, fail, guarded_command, open_ledger, when

app = typer.Typer(help="Runs: the calls of one business event, and what happened to each.", no_args_is_help=True)


@app.command("list")
@guarded_command
def list_runs(
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    state: Annotated[
        str | None,
        typer.Option(
            parser=RUN_STATES,
            metavar="STATE",
            help="Only runs in this state: running, paused, completed, finished_by_hand, rolling_back, rolled_back, "
            "pending_review or halted.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, newest first.")] = 50,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first."""
    ledger = open_ledger(db)
    runs = ledger.list_runs(team=team, state=state, limit=limit)
    if as_json:
        emit([r.to_dict() for r in runs])
        return
    if not runs:
        echo("no runs")
        return
    for r in runs:
        label = f"  [{r.status_label}]" if r.status_label else ""
        echo(
            f"{r.run_id}  {r.team:<12} {r.state:<16} calls={r.call_count:<4} {when(r.created_at)}"
            f"  {r.subject or ''}{label}"
        )


@app.command("show")
@guarded_command
def show(
    run_id: Annotated[str, typer.Argument(help="The run id (see `guard runs list`).")],
    db: DbOption = None,
    as_json: JsonFlag = False,
    events: Annotated[bool, typer.Option("--events/--no-events", help="Print the event trail.")] = True,
) -> None:
    """Tell a run's story: its state, every call with its external ids, and the event trail."""
    ledger = open_ledger(db)
    run = ledger.get_run(run_id)
    if run is None:
        fail(f"no run {run_id}; list them with `guard runs list`")
    story = ledger.run_story(run)
    if as_json:
        emit(story)
        return
    echo(f"run {run.run_id}")
    echo(f"  team {run.team}   subject {run.subject or '-'}   source event {run.source_event_id or '-'}")
    echo(
        f"  state {run.state}"
        + (f"   ({run.status_label})" if run.status_label else "")
        + ("   REQUIRES REVIEW" if run.requires_review else "")
    )
    if run.state == "finished_by_hand":  # RunState.FINISHED_BY_HAND (the CLI starts without the ledger)
        for m in (m for m in story["manual_actions"] if m["action"] == "finish"):
            echo(f"  FINISHED BY HAND by {m['operator']} at {when(m['at'])}: {m['note']}")
    last = next((c for c in story["calls"] if c["call_id"] == run.last_call_id), None)
    last_text = f"#{last['seq']} {last['tool']}" if last else "-"
    echo(f"  last successful call: {last_text}")
    if run.error_summary:
        echo(f"  error: {run.error_summary}")
    if run.next_safe_action:
        echo(f"  next safe action: {run.next_safe_action}")
    echo("calls:")
    seqs = {c["call_id"]: c["seq"] for c in story["calls"]}
    for c in story["calls"]:
        ids = " ".join(f"{k}={v}" for k, v in c["external_ids"].items())
        link = f"  compensates #{seqs[c['compensates_call_id']]}" if c["compensates_call_id"] in seqs else ""
        echo(f"  #{c['seq']:<3} {c['tool']:<30} {c['side_effect'] or '-':<13} {c['state']:<18} {ids}{link}")
        if c["reason"]:
            echo(f"        reason: {c['reason']}")
        if c["error"]:
            echo(f"        error: {c['error']}")
    for m in story["manual_actions"]:
        echo(f"  by hand: {when(m['at'])} {m['operator']} {m['action']}: {m['note']}")
    if events:
        echo("events:")
        for e in story["events"]:
            what = f"call #{seqs.get(e['call_id'], '?')}" if e["entity"] == "call" else e["entity"]
            echo(f"  {when(e['at'])}  {e['actor']:<10} {what:<9} {e['from_state'] or '·'} -> {' -> '.join(e['path'])}")
