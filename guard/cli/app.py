"""`guard`: the root command. Each group lives in its own module."""

from __future__ import annotations

import sys

import typer

from guard.cli import (
    approvals_cmd,
    drill_cmd,
    incident_cmd,
    ledger_cmd,
    notify_cmd,
    operate_cmd,
    ops_cmd,
    policy_cmd,
    policy_init,
    replay_cmd,
    report_cmd,
    runs_cmd,
    serve_cmd,
)
from guard.cli.common import echo

app = typer.Typer(
    name="guard",
    help=(
        "Guard sits between an AI agent and the tools that change the world. It classifies every tool call "
        "by side-effect class from a team policy (policies/<team>.yaml), records each call's life in a durable "
        "ledger, and holds high-impact calls for a human decision.\n\n"
        "Start here: `guard policy validate policies/*.yaml`, then `guard policy explain TOOL --team T "
        "--args '{...}'`. After an agent ran: `guard runs list`, `guard runs show RUN`, `guard approvals "
        "list`.\n\nThe ledger is --db / $GUARD_DATABASE_URL (default ./guard.db); policies are --policies / "
        "$GUARD_POLICY_DIR (default ./policies). Exit codes: 0 ok, 1 check failed or refused, 2 usage error."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
policy_cmd.app.command("init", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    policy_init.init
)
policy_cmd.app.command("replay")(replay_cmd.replay)
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(approvals_cmd.app, name="approvals")
app.add_typer(ledger_cmd.ledger_app, name="ledger")
app.add_typer(ledger_cmd.db_app, name="db")
runs_cmd.app.command("retry-call")(operate_cmd.retry_call_cmd)
runs_cmd.app.command("compensate")(operate_cmd.compensate_cmd)
runs_cmd.app.command("finish")(operate_cmd.finish_cmd)
app.command("recover")(operate_cmd.recover)
app.command("pause")(ops_cmd.pause)
app.command("unpause")(ops_cmd.unpause)
app.command("pauses")(ops_cmd.pauses)
app.add_typer(serve_cmd.tokens_app, name="tokens")
app.command("serve")(serve_cmd.serve)
app.add_typer(notify_cmd.app, name="notifications")
app.add_typer(incident_cmd.app, name="incident")
app.command("report")(report_cmd.report)
app.command("drill")(drill_cmd.drill)


def main() -> None:
    """`guard ...`: every argument must be UTF-8 text, then the command runs.

    Python hands an argument that is not UTF-8 to the program as lone surrogates (`surrogateescape`), which no
    ledger, log or HTTP answer can hold: it is refused as a usage error (exit 2) naming it, before anything is
    opened, instead of a traceback from the database driver halfway through a command."""
    for place, arg in enumerate(sys.argv[1:], start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = arg.encode("utf-8", "surrogateescape")
            echo(f"error: argument {place} ({raw!r}) is not UTF-8 text: give it in UTF-8", err=True)
            raise SystemExit(2) from None
    app()
