"""`guard recover` and `guard runs retry-call | compensate | finish`: acting on what stopped.

`recover`, `retry-call` and `compensate` run tool code, so they load the agent's Guard with `--app`
(its tools, compensations and reconcile checks). `finish` only records what a person did.
"""

from __future__ import annotations

from typing import Annotated

import typer

from guard.cli.common import (
    AppOption,
    DbOption,
    JsonFlag,
    Who,
    echo,
    emit,
    guarded_command,
    load_app,
    open_ledger,
    operator_name,
)

Note = Annotated[str, typer.Option("--note", help="What you did or decided, and why (kept in the ledger).")]


@guarded_command
def recover(app: AppOption, db: DbOption = None,
            stale_after: Annotated[float | None, typer.Option(
                help="Take over started calls with no sign of life for this many seconds; 0 when their worker "
                     "is known dead.", show_default="when their lease ran out")] = None,
            as_json: JsonFlag = False) -> None:
    """Resolve what dead workers left: started calls, calls in doubt, sagas cut short. Never re-runs blindly."""
    guard = load_app(app, db)
    report = guard.recover(stale_after=stale_after)
    data = {"claimed": report.claimed, "retried": report.retried, "reconciled": report.reconciled,
            "ran_once": report.ran_once, "to_review": report.to_review, "compensations": report.compensations,
            "notes": report.notes}
    if as_json:
        emit(data)
        return
    echo(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data.items() if k != "notes"))
    for note in report.notes:
        echo(f"  review: {note}")


@guarded_command
def retry_call_cmd(run_id: Annotated[str, typer.Argument(help="The run.")],
                   call_id: Annotated[str, typer.Argument(help="The failed or in-doubt call to run again.")],
                   note: Note, app: AppOption, who: Who = None, db: DbOption = None) -> None:
    """Run one failed or in-doubt call again with its recorded arguments and key (only when that is safe)."""
    guard = load_app(app, db)
    from guard.runtime.operator import retry_call

    report = retry_call(guard, run_id, call_id, operator=operator_name(who), note=note)
    call = guard.ledger.get_call(call_id)
    echo(f"call {call_id}: {call.state if call else '?'}")
    for line in report.notes:
        echo(f"  {line}")


@guarded_command
def compensate_cmd(run_id: Annotated[str, typer.Argument(help="The run.")], note: Note, app: AppOption,
                   who: Who = None, db: DbOption = None) -> None:
    """Run the remaining compensations of a stopped run, newest first; each runs at most once."""
    from guard.runtime.operator import compensate

    outcome = compensate(load_app(app, db), run_id, operator=operator_name(who), note=note)
    echo(f"run {run_id}: {outcome.close.state if outcome.close else '?'}")
    for line in outcome.undone:
        echo(f"  undone: {line}")
    for line in outcome.remains:
        echo(f"  remains: {line}")


@guarded_command
def finish_cmd(run_id: Annotated[str, typer.Argument(help="The run.")], note: Note, who: Who = None,
               db: DbOption = None) -> None:
    """Close a halted or pending-review run as completed by hand, with a note of what you did."""
    from guard.runtime.operator import finish

    run = finish(open_ledger(db), run_id, operator=operator_name(who), note=note)
    echo(f"run {run_id}: {run.state} (finished by hand)")
