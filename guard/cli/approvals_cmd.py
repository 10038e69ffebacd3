"""`guard approvals ...`: what waits for a human, with its full context, and the decision itself.

The reviewer's authority comes from the team's policy (`reviewers:`): a decision needs one of the roles the
approval names; nobody decides a call they asked for; a rejection needs a reason.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer

from guard.cli.choices import APPROVAL_STATES
from guard.cli.common import (
    DbOption,
    JsonFlag,
    PoliciesDir,
    ago,
    echo,
    emit,
    fail,
    guarded_command,
    open_ledger,
    policy_dir,
    when,
)
from guard.cli.service_client import TOKEN_ENV, decide_over_http
from guard.errors import ApprovalDecisionError
from guard.policy import PolicySet

if TYPE_CHECKING:  # the CLI loads the ledger only in the commands that open one
    from guard.ledger import ApprovalRecord, Ledger

app = typer.Typer(help="Approvals: calls waiting for a human decision.", no_args_is_help=True)

Reviewer = Annotated[
    str | None,
    typer.Option(
        "--as",
        help=(
            "Decide directly in the ledger as this reviewer. Operator power: nothing proves the name, so whoever can "
            "write the ledger can decide as anyone. People decide with --server."
        ),
        show_default="$GUARD_REVIEWER",
    ),
]
Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        help=(
            "Decide through the approval service at this URL (`guard serve`), as the reviewer your token names: "
            f"the token is read from ${TOKEN_ENV}."
        ),
        show_default="$GUARD_SERVER_URL",
    ),
]


def _approval_json(a: ApprovalRecord, ledger: Ledger | None = None) -> dict[str, Any]:
    data = a.to_dict()
    data["args"] = json.loads(data.pop("args_json"))
    edited = data.pop("approved_args_json")
    data["approved_args"] = json.loads(edited) if edited is not None else None  # a reviewer's edit, if any
    data["roles"] = a.role_list
    data["decided_by"] = json.loads(a.decided_by) if a.decided_by else []
    if ledger is not None:
        data["decisions"] = [d.to_dict() for d in ledger.decisions_of(a.approval_id)]
    return data


@app.command("list")
@guarded_command
def list_approvals(
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    state: Annotated[
        str,
        typer.Option(parser=APPROVAL_STATES, metavar="STATE", help="pending, approved, rejected, expired or all."),
    ] = "pending",
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List approvals (pending ones by default), oldest first."""
    ledger = open_ledger(db)
    items = ledger.list_approvals(state=None if state == "all" else state, team=team)
    if as_json:
        emit([_approval_json(a) for a in items])
        return
    if not items:
        echo(f"no {state} approvals")
        return
    now = time.time()
    for a in items:
        echo(
            f"{a.approval_id}  {a.team:<12} {a.tool:<28} roles={','.join(a.role_list):<14} "
            f"asked {ago(a.requested_at, now)}, expires {ago(a.expires_at, now)}  [{a.state}]"
        )


@app.command("show")
@guarded_command
def show(
    approval_id: Annotated[str, typer.Argument(help="The approval id (see `guard approvals list`).")],
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Everything a reviewer needs: the exact arguments and their hash, the rule, the run so far."""
    ledger = open_ledger(db)
    a = ledger.get_approval(approval_id)
    if a is None:
        fail(f"no approval {approval_id}; list them with `guard approvals list`")
    data = _approval_json(a, ledger)
    calls = ledger.calls_of(a.run_id)
    data["run"] = [{"seq": c.seq, "tool": c.tool, "state": c.state, "external_ids": c.external_id_map} for c in calls]
    if as_json:
        emit(data)
        return
    now = time.time()
    echo(f"approval {a.approval_id}  [{a.state}]")
    echo(f"  {a.team} / {a.tool}   rule {a.rule or '-'}   asked by {a.requested_by or '-'}")
    echo(
        f"  needs {a.quorum} of roles {', '.join(a.role_list)}; expires {when(a.expires_at)} ({ago(a.expires_at, now)})"
    )
    echo(f"  arguments (hash {a.args_hash}):")
    for line in json.dumps(data["args"], indent=2).splitlines():
        echo(f"    {line}")
    if data["approved_args"] is not None and a.approved_args_hash != a.args_hash:
        echo(f"  edited by a reviewer to (hash {a.approved_args_hash}; the call runs with these):")
        for line in json.dumps(data["approved_args"], indent=2).splitlines():
            echo(f"    {line}")
    echo(f"  run {a.run_id} so far:")
    for c in calls:
        ids = " ".join(f"{k}={v}" for k, v in c.external_id_map.items())
        marker = "  <- this call" if c.call_id == a.call_id else ""
        echo(f"    #{c.seq:<3} {c.tool:<30} {c.state:<18} {ids}{marker}")
    for d in data["decisions"]:
        echo(
            f"  decision: {d['reviewer']} {d['decision']} at {when(d['at'])}"
            + (f": {d['reason']}" if d["reason"] else "")
        )
    if a.state == "pending":
        echo(
            f"  decide: guard approvals approve {a.approval_id} --server URL   |   "
            f"guard approvals reject {a.approval_id} --server URL --reason TEXT   (your token in "
            f"${TOKEN_ENV})"
        )


def _decide(
    approval_id: str,
    reviewer: str | None,
    decision: Literal["approve", "reject"],
    reason: str | None,
    args_hash: str | None,
    db: str | None,
    policies: Any,
    as_json: bool,
    edit: str | None = None,
    server: str | None = None,
) -> None:
    if server and reviewer:
        fail(
            "--server decides as the reviewer your token names; --as is direct ledger access (operator power): "
            "use one of them",
            2,
        )
    url = server or (None if reviewer else os.environ.get("GUARD_SERVER_URL"))
    if url:
        edited = _edited(edit, frozenset())  # the service refuses an edit of a secret field itself
        decide_over_http(url, approval_id, decision, reason=reason, args_hash=args_hash, edited=edited, as_json=as_json)
        return
    who = reviewer or os.environ.get("GUARD_REVIEWER")
    if not who:
        fail(
            f"say how you decide: --server URL with your reviewer token in ${TOKEN_ENV} (or set GUARD_SERVER_URL); "
            "or, with direct ledger access (operator power), --as NAME",
            2,
        )
    ledger = open_ledger(db)
    approval = ledger.get_approval(approval_id)
    if approval is None:
        fail(f"no approval {approval_id}; list them with `guard approvals list`")
    policy_set = PolicySet.load_dir(policy_dir(policies))
    edited = _edited(edit, policy_set.get(approval.team).secret_fields)
    from guard.runtime.review import review  # the runtime only for a decision, never for `guard policy ...`

    try:
        result = review(
            ledger,
            policy_set,
            approval_id,
            reviewer=who,
            decision=decision,
            reason=reason,
            shown_args_hash=args_hash,
            edited_args=edited,
        )
    except ApprovalDecisionError as err:
        if as_json:
            emit({"ok": False, "code": err.fields.get("code"), "error": str(err)})
            raise typer.Exit(1) from err
        fail(f"{err} [{err.fields.get('code')}]")
    a = result.approval
    if as_json:
        emit({"ok": True, "settled": result.settled, "repeat": result.repeat, "approval": _approval_json(a)})
        return
    if result.repeat:
        echo(f"{who} already decided {decision} on {approval_id}; nothing changed (now {a.state})")
    elif result.settled:
        pause = ledger.pause_holding(a.team, a.tool, a.run_id) if a.state == "approved" else None
        echo(
            f"{approval_id} {a.state} by {who}: {a.tool} in run {a.run_id} "
            + ((pause or "may run now") if a.state == "approved" else "will not run")
        )
    else:
        echo(
            f"{who}'s decision on {approval_id} is recorded; the arguments on the table need {a.quorum} "
            f"distinct approver(s) with role {' or '.join(a.role_list)} in all"
        )


def _edited(text: str | None, secret_fields: frozenset[str]) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value: Any = json.loads(text)
    except ValueError as exc:
        fail(f"--edit: not JSON ({exc}); pass the whole argument object, e.g. --edit '{{\"amount_cents\": 5000}}'", 2)
    except RecursionError:  # the parser's own depth limit
        fail("--edit: nested too deep to read; flatten it (a call takes at most 64 levels)", 2)
    if not isinstance(value, dict):
        fail("--edit: pass the arguments as a JSON object", 2)
    from guard.canonical import sets_secrets

    if sets_secrets(value, secret_fields):
        fail("--edit: secret fields cannot be edited; leave them as [REDACTED] (the agent's value is kept)", 2)
    return cast(dict[str, Any], value)


@app.command("approve")
@guarded_command
def approve(
    approval_id: Annotated[str, typer.Argument(help="The approval id.")],
    reviewer: Reviewer = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
    args_hash: Annotated[
        str | None,
        typer.Option(
            "--args-hash", help="Refuse unless the waiting arguments still have this hash (from `approvals show`)."
        ),
    ] = None,
    edit: Annotated[
        str | None,
        typer.Option(
            "--edit",
            help="Approve these arguments instead: the whole "
            "JSON object (start from `approvals show --json`); the call runs with them.",
        ),
    ] = None,
    server: Server = None,
    db: DbOption = None,
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve a waiting call: the exact arguments it waits with, or your edit of them (--edit).

    People decide through the approval service: `--server URL` (or $GUARD_SERVER_URL) with their reviewer token
    in $GUARD_TOKEN. `--as NAME` writes the ledger directly, which is operator power."""
    _decide(approval_id, reviewer, "approve", reason, args_hash, db, policies, as_json, edit, server)


@app.command("reject")
@guarded_command
def reject(
    approval_id: Annotated[str, typer.Argument(help="The approval id.")],
    reason: Annotated[str, typer.Option(help="Why: the agent is told, the audit trail keeps it.")],
    reviewer: Reviewer = None,
    server: Server = None,
    db: DbOption = None,
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject a waiting call with a reason; it never runs.

    People decide through the approval service: `--server URL` (or $GUARD_SERVER_URL) with their reviewer token
    in $GUARD_TOKEN. `--as NAME` writes the ledger directly, which is operator power."""
    _decide(approval_id, reviewer, "reject", reason, None, db, policies, as_json, server=server)
