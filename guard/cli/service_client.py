"""Deciding an approval through the approval service over HTTP, as the reviewer a token names.

This is how people decide from the terminal: the service checks the token, the reviewer's roles in the team's
policy as it is now, self-approval and the arguments' hash, exactly as for the web page. The token is read from
`$GUARD_TOKEN` only (a command-line argument would land in the shell history and the process list).
"""

from __future__ import annotations

import os
from typing import Any, Literal, NoReturn, cast
from urllib.parse import quote

import typer

from guard.cli.common import echo, emit, fail

__all__ = ["TOKEN_ENV", "decide_over_http"]

TOKEN_ENV = "GUARD_TOKEN"  # noqa: S105 (the variable's name, not a token)


def _problem(response: Any) -> tuple[str, str]:
    """The service's refusal as (sentence, code), whatever the body."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase, "http"
    if isinstance(body, dict):
        fields = cast(dict[str, Any], body)
        return str(fields.get("detail")), str(fields.get("code", "http"))
    return str(body), "http"


def decide_over_http(
    server: str,
    approval_id: str,
    decision: Literal["approve", "reject"],
    *,
    reason: str | None,
    args_hash: str | None,
    edited: dict[str, Any] | None,
    as_json: bool,
) -> None:
    """Show the approval (so the decision binds to the arguments on the table, or to `args_hash` when given),
    then post the decision. A refusal exits 1 with the service's reason and code; a missing token or an
    unreachable service exits 2."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with the server extra, which the dev install has
        fail("deciding through the approval service needs httpx: pip install 'guard-middleware[server]'", 2)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        fail(
            f"set {TOKEN_ENV} to your reviewer token (`guard tokens create --reviewer NAME` prints it once); "
            "the token says who you are",
            2,
        )
    path = f"/api/approvals/{quote(approval_id, safe='')}"
    try:
        with httpx.Client(
            base_url=server.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=30.0
        ) as client:
            shown = client.get(path)
            if shown.status_code != 200:
                _refused(shown, as_json)
            approval = shown.json()
            body = {
                "decision": decision,
                "reason": reason,
                "args_hash": args_hash or approval["args_hash"],
                "edited_args": edited,
            }
            response = client.post(f"{path}/decision", json=body)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the approval service at {server}: {exc}", 2)
    if response.status_code != 200:
        _refused(response, as_json)
    out = response.json()
    if as_json:
        emit({"ok": True, **out})
        return
    who, state = out["reviewer"], out["state"]
    if out["repeat"]:
        echo(f"{who} already decided {decision} on {approval_id}; nothing changed (now {state})")
    elif out["settled"]:
        echo(
            f"{approval_id} {state} by {who} (through {server}): {approval['tool']} in run {approval['run_id']} "
            + ("may run now" if state == "approved" else "will not run")
        )
    else:
        echo(f"{who} approved {approval_id}; it still needs {approval['quorum']} distinct approvers in all")


def _refused(response: Any, as_json: bool) -> NoReturn:
    detail, code = _problem(response)
    if as_json:
        emit({"ok": False, "status": response.status_code, "code": code, "error": detail})
        raise typer.Exit(1)
    fail(f"the approval service refused (HTTP {response.status_code}): {detail} [{code}]")
