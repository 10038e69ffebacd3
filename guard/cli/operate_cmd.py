"""`guard recover` and `guard runs retry-call | compensate | finish`: acting on what stopped.

`recover`, `retry-call` and `compensate` run tool code, so they load the agent's Guard with `--app`
(its tools, compensations and reconcile checks). `finish` only records what a person did.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

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
    when,
)

if TYPE_CHECKING:  # the runtime is imported inside the commands: `guard policy ...` starts without it
    from guard.runtime.recovery import Held

Note = Annotated[str, typer.Option("--note", help="What you did or decided, and why (kept in the ledger).")]


@guarded_command
def recover(
    app: AppOption,
    db: DbOption = None,
    stale_after: Annotated[
        float | None,
        typer.Option(
            help="Take over started calls with no sign of life for this many seconds; 0 when every other "
            "worker is known dead.",
            show_default="when their lease ran out",
        ),
    ] = None,
    dead_worker: Annotated[
        list[str] | None,
        typer.Option(
            "--dead-worker",
            help="A worker you know is dead (its process is gone): take over its calls now, "
            "without waiting for its lease to run out. Repeat for several.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Resolve what dead workers left: started calls, calls in doubt, sagas cut short. Never re-runs blindly.

    A call still held by a live lease is left alone and listed, with when its lease runs out and how to take
    it over now if you know its worker is dead."""
    from guard.runtime.leases import gone_process

    guard = load_app(app, db)
    report = guard.recover(stale_after=stale_after, dead_workers=dead_worker or ())
    data: dict[str, Any] = {
        "claimed": report.claimed,
        "retried": report.retried,
        "reconciled": report.reconciled,
        "ran_once": report.ran_once,
        "to_review": report.to_review,
        "compensations": report.compensations,
        "notes": report.notes,
        "held": [
            {
                "run_id": h.run_id,
                "call_id": h.call_id,
                "seq": h.seq,
                "tool": h.tool,
                "worker": h.worker,
                "until": h.until,
                "dead_process": gone_process(h.worker),
            }
            for h in report.held
        ],
    }
    if as_json:
        emit(data)
        return
    echo(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data.items() if k not in ("notes", "held")))
    for note in report.notes:
        echo(f"  review: {note}")
    for line in _held_lines(report.held, app):
        echo(line)


def _held_lines(held: list[Held], app: str) -> list[str]:
    """Each started call left alone, when its lease runs out, and the commands that take it over."""
    from guard.runtime.leases import gone_process

    if not held:
        return []
    now = time.time()
    lines: list[str] = []
    for worker in sorted({h.worker or "?" for h in held}):
        mine = [h for h in held if (h.worker or "?") == worker]
        until = max((h.until for h in mine if h.until is not None), default=None)
        calls = ", ".join(f"#{h.seq} {h.tool} in run {h.run_id}" for h in mine)
        lines.append(f"  held by worker {worker}: {calls}")
        pid = gone_process(worker)
        if pid is not None:
            lines.append(
                f"    worker {worker} ran on this host as process {pid}, which is not running any more: "
                f"it is dead. Take its calls over now: guard recover --app {app} --dead-worker {worker}"
            )
            continue
        wait = f"in {max(0, until - now):.0f}s (at {when(until)})" if until is not None else "when its lease runs out"
        lines.append(
            f"    its lease runs out {wait}; run `guard recover --app {app}` again then. If you know "
            f"that worker is dead (its process is gone), take its calls over now: "
            f"guard recover --app {app} --dead-worker {worker}"
        )
    return lines


@guarded_command
def retry_call_cmd(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    call_id: Annotated[str, typer.Argument(help="The failed or in-doubt call to settle.")],
    note: Note,
    app: AppOption,
    who: Who = None,
    db: DbOption = None,
    confirmed_absent: Annotated[
        bool,
        typer.Option(
            "--confirmed-absent",
            help="You checked the other system (by the call's idempotency key) "
            "and its effect is not there: run it once although no reconcile check can tell. Recorded "
            "with your note.",
        ),
    ] = False,
) -> None:
    """Settle a failed or in-doubt call, never blindly: a repeat-safe call runs again with its key; any other call
    is reconciled first (found: recorded, nothing runs; confirmed absent: runs once; unknown: refused)."""
    from guard.runtime.operator import retry_call

    guard = load_app(app, db)
    report = retry_call(
        guard, run_id, call_id, operator=operator_name(who), note=note, confirmed_absent=confirmed_absent
    )
    call = guard.ledger.get_call(call_id)
    how = (
        " (found by its reconcile check: recorded, nothing ran)"
        if report.reconciled and not report.retried
        else " (ran once)"
        if report.retried
        else ""
    )
    echo(f"call {call_id}: {call.state if call else '?'}{how}")
    for line in report.notes:
        echo(f"  {line}")
    run = guard.ledger.get_run(run_id)
    if run is not None:
        echo(f"run {run_id}: {run.state}" + (f"; next: {run.next_safe_action}" if run.next_safe_action else ""))


@guarded_command
def compensate_cmd(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    note: Note,
    app: AppOption,
    who: Who = None,
    db: DbOption = None,
) -> None:
    """Run the remaining compensations of a stopped run, newest first; each runs at most once."""
    from guard.runtime.operator import compensate

    outcome = compensate(load_app(app, db), run_id, operator=operator_name(who), note=note)
    echo(f"run {run_id}: {outcome.close.state if outcome.close else '?'}")
    for line in outcome.undone:
        echo(f"  undone: {line}")
    for line in outcome.remains:
        echo(f"  remains: {line}")


@guarded_command
def finish_cmd(
    run_id: Annotated[str, typer.Argument(help="The run.")], note: Note, who: Who = None, db: DbOption = None
) -> None:
    """Close a halted or pending-review run by hand, with a note of what you did: it is recorded and shown as
    `finished_by_hand` (never `completed`, which only an agent that finished its work records)."""
    from guard.runtime.operator import finish

    run = finish(open_ledger(db), run_id, operator=operator_name(who), note=note)
    echo(f"run {run_id}: {run.state}" + (f" ({run.status_label})" if run.status_label else ""))
