"""Tool definition binding: an approval covers the upstream tool as it was defined when the call was offered.
A real client over stdio to the proxy; the CRM server is redeployed with another `send_quote` description
between the approval and the client's return (`CRM_QUOTE_DESCRIPTION`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mcp_types as types
from guard_mcp import BINDING_FIELD
from mcp.client.session import ClientSession
from mcp_world import (
    call,
    effects,
    guard_cli,
    ledger_calls,
    outcome,
    server_env,
    session,
    stdio_proxy,
    text,
    write_policy,
)

QUOTE = {"email": "ann@acme.io", "amount_cents": 120000}
V2 = "Email a price quote to a customer AND charge their card on file."


def _approve(policies: Path, db: str, approval_id: str) -> None:
    done = guard_cli("approvals", "approve", approval_id, "--as", "maria", "--db", db, "--policies", str(policies))
    assert done.returncode == 0, done.stdout + done.stderr


def _args_shown(db: str, approval_id: str) -> dict[str, Any]:
    return json.loads(guard_cli("approvals", "show", approval_id, "--db", db, "--json").stdout)["args"]


def test_a_tool_changed_after_its_approval_does_not_run_on_it_and_waits_for_a_new_one(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    v1 = stdio_proxy(policies, ledger_url, log, "quote-b")
    v2 = stdio_proxy(policies, ledger_url, log, "quote-b", env=server_env(log, CRM_QUOTE_DESCRIPTION=V2))

    first = outcome(call(v1, "send_quote", QUOTE))
    _approve(policies, ledger_url, first["approval_id"])
    again = call(v2, "send_quote", QUOTE)  # the server was redeployed: send_quote now says something else

    assert outcome(again)["outcome"] == "ApprovalPending" and outcome(again)["approval_id"] != first["approval_id"]
    assert effects(log) == []  # the approval of the old definition ran nothing
    # The call approved for the old definition is over: expired with the reason, not left `approved` forever.
    assert ledger_calls(policies, ledger_url, "crm:quote-b") == [
        ("send_quote", "expired"),
        ("send_quote", "awaiting_approval"),
    ]
    stale = json.loads(guard_cli("approvals", "show", first["approval_id"], "--db", ledger_url, "--json").stdout)
    assert stale["state"] == "approved"  # what the reviewer decided stays in the record
    old, new = _args_shown(ledger_url, first["approval_id"]), _args_shown(ledger_url, outcome(again)["approval_id"])
    assert (
        {k: v for k, v in old.items() if k != BINDING_FIELD}
        == QUOTE
        == {k: v for k, v in new.items() if k != BINDING_FIELD}
    )
    assert old[BINDING_FIELD] != new[BINDING_FIELD]  # the reviewer sees which definition they approve

    _approve(policies, ledger_url, outcome(again)["approval_id"])
    ran = call(v2, "send_quote", QUOTE)
    assert not ran.is_error
    assert [(e["kind"], e["description"]) for e in effects(log)] == [("quote", V2)]  # once, as approved


def test_a_request_still_waiting_when_its_tool_changes_is_withdrawn_from_the_reviewers_queue(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    v1 = stdio_proxy(policies, ledger_url, log, "quote-w")
    v2 = stdio_proxy(policies, ledger_url, log, "quote-w", env=server_env(log, CRM_QUOTE_DESCRIPTION=V2))

    first = outcome(call(v1, "send_quote", QUOTE))
    again = outcome(call(v2, "send_quote", QUOTE))  # redeployed before anyone decided
    assert again["outcome"] == "ApprovalPending" and again["approval_id"] != first["approval_id"]
    shown = json.loads(guard_cli("approvals", "show", first["approval_id"], "--db", ledger_url, "--json").stdout)
    assert shown["state"] == "expired" and shown["reason"].startswith("superseded: send_quote changed upstream")
    waiting = json.loads(guard_cli("approvals", "list", "--json", "--db", ledger_url).stdout)
    assert [a["approval_id"] for a in waiting] == [again["approval_id"]]  # only the request that can still run
    assert effects(log) == []


def test_a_call_that_ran_is_not_run_again_after_its_tool_changed(tmp_path: Path, ledger_url: str) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    v1 = stdio_proxy(policies, ledger_url, log, "quote-c")
    v2 = stdio_proxy(policies, ledger_url, log, "quote-c", env=server_env(log, CRM_QUOTE_DESCRIPTION=V2))
    other = {"email": "bo@acme.io", "amount_cents": 9900}

    async def approve_and_run(client: ClientSession) -> list[types.CallToolResult]:
        waiting = await client.call_tool("send_quote", QUOTE)
        _approve(policies, ledger_url, outcome(waiting)["approval_id"])
        # Another quote still waits when the client goes away, so the run stays open (paused).
        return [await client.call_tool("send_quote", QUOTE), await client.call_tool("send_quote", other)]

    ran, pending = session(v1, approve_and_run)
    assert not ran.is_error and outcome(pending)["outcome"] == "ApprovalPending"
    resent = call(v2, "send_quote", QUOTE)
    assert outcome(resent)["outcome"] == "DefinitionChanged" and outcome(resent)["state"] == "completed"
    assert "not run or offered again" in text(resent)
    assert [e["kind"] for e in effects(log)] == ["quote"]


def test_the_same_definition_keeps_its_approval_across_a_redeploy(tmp_path: Path, ledger_url: str) -> None:
    """The control: a server restarted without a change runs the approved call (the binding is exact)."""
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    first = outcome(call(stdio_proxy(policies, ledger_url, log, "quote-d"), "send_quote", QUOTE))
    _approve(policies, ledger_url, first["approval_id"])
    ran = call(stdio_proxy(policies, ledger_url, log, "quote-d"), "send_quote", QUOTE)
    assert not ran.is_error and [e["kind"] for e in effects(log)] == ["quote"]
    assert ledger_calls(policies, ledger_url, "crm:quote-d") == [("send_quote", "completed")]
