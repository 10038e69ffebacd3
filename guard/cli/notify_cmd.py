"""`guard notifications list|deliver`: what the teams' webhooks were told, and one delivery pass by hand.

`guard serve` delivers every second; `deliver` is for a ledger with no service running (cron, a script).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from guard.cli.choices import NOTICE_STATES
from guard.cli.common import DbOption, JsonFlag, PoliciesDir, ago, echo, emit, guarded_command, open_ledger, policy_dir
from guard.policy import PolicySet

__all__ = ["app"]

app = typer.Typer(
    help="Webhook notifications of waiting calls and halted runs (policy `notify:`).", no_args_is_help=True
)


@app.command("list")
@guarded_command
def list_notices(
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    state: Annotated[
        str | None,
        typer.Option(parser=NOTICE_STATES, metavar="STATE", help="Only these: sending, sent, failed or skipped."),
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many, newest first.")] = 50,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """What each team's webhook was told, newest first, with failures and their last error."""
    rows = open_ledger(db).notices(team=team, state=state, run_id=run, limit=limit)
    if as_json:
        emit([r.to_dict() for r in rows])
        return
    if not rows:
        echo("no notifications")
        return
    now = time.time()
    for r in rows:
        echo(
            f"{r.state:<8} {r.kind:<17} {r.team:<12} run {r.run_id}  {r.target}  attempts {r.attempts}  "
            f"{ago(r.updated_at, now)}" + (f"  ({r.last_error})" if r.last_error else "")
        )


@app.command("deliver")
@guarded_command
def deliver(
    public_url: Annotated[
        str, typer.Option(help="The reviewer page's address, for the links.")
    ] = "http://127.0.0.1:8700",
    db: DbOption = None,
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Send what the ledger holds since the last pass (exit 1 when a delivery failed)."""
    from guard.notify import Notifier

    notifier = Notifier(open_ledger(db), PolicySet.load_dir(policy_dir(policies)), public_url)
    report = notifier.deliver()
    if as_json:
        emit({"sent": report.sent, "failed": report.failed, "skipped": report.skipped, "errors": report.errors})
    else:
        echo(f"sent {report.sent}, failed {report.failed}, skipped {report.skipped}")
        for error in report.errors:
            echo(f"  failed: {error}")
    if report.failed:
        raise typer.Exit(1)
