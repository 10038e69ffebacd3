"""Approvals through the MCP proxy: a real MCP client over stdio to `python -m guard_mcp` (deferred approval)
in front of the real CRM server; reviewers decide with Guard's own CLI (`guard approvals approve|reject`)."""

from __future__ import annotations

import json
from pathlib import Path

import mcp_types as types
from mcp.client.session import ClientSession
from mcp_world import (
    call,
    effects,
    guard_cli,
    ledger_calls,
    outcome,
    session,
    stdio_proxy,
    text,
    write_policy,
)

QUOTE = {"email": "ann@acme.io", "amount_cents": 120000}


def _decide(policies: Path, db: str, verb: str, approval_id: str, *extra: str) -> None:
    done = guard_cli("approvals", verb, approval_id, "--as", "maria", "--db", db, "--policies", str(policies), *extra)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_held_call_waits_is_approved_with_the_cli_and_runs_once_on_the_clients_retry(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(policies, ledger_url, log, "quote-1")

    async def work(client: ClientSession) -> list[types.CallToolResult]:
        waiting = await client.call_tool("send_quote", QUOTE)
        pending = outcome(waiting)
        shown = guard_cli("approvals", "show", pending["approval_id"], "--db", ledger_url, "--json")
        assert json.loads(shown.stdout)["args"]["email"] == "ann@acme.io"  # the reviewer sees the arguments
        _decide(policies, ledger_url, "approve", pending["approval_id"])
        return [waiting, await client.call_tool("send_quote", QUOTE), await client.call_tool("send_quote", QUOTE)]

    waiting, ran, again = session(proxy, work)
    assert outcome(waiting)["outcome"] == "ApprovalPending" and "waits for approval" in text(waiting)
    assert not ran.is_error and ran.structured_content == {"quote_id": "q-ann-120000"}
    assert again.structured_content == ran.structured_content  # sent again: the recorded result, nothing runs
    assert [e["kind"] for e in effects(log)] == ["quote"]
    assert ledger_calls(policies, ledger_url, "crm:quote-1") == [("send_quote", "completed")]


def test_a_rejected_call_never_runs_and_the_reviewers_reason_reaches_the_client_as_an_error(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(policies, ledger_url, log, "quote-2")
    waiting = call(proxy, "send_quote", QUOTE)
    _decide(policies, ledger_url, "reject", outcome(waiting)["approval_id"], "--reason", "price not agreed yet")

    async def come_back(client: ClientSession) -> list[types.CallToolResult]:  # the client returns for its answer
        return [await client.call_tool("send_quote", QUOTE), await client.call_tool("send_quote", QUOTE)]

    rejected, again = session(proxy, come_back)
    assert outcome(rejected)["state"] == "rejected" and "price not agreed yet" in text(rejected)
    assert outcome(again)["state"] == "rejected"  # sent again: the same answer, no new request for approval
    assert effects(log) == []
    assert ledger_calls(policies, ledger_url, "crm:quote-2") == [("send_quote", "rejected")]


def test_a_tool_annotated_read_only_still_waits_when_the_policy_says_irreversible(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(policies, ledger_url, log, "quote-3")

    async def work(client: ClientSession) -> tuple[types.Tool, types.CallToolResult]:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        return listed["send_quote"], await client.call_tool("send_quote", QUOTE)

    tool, result = session(proxy, work)
    assert tool.annotations is not None and tool.annotations.read_only_hint is True  # what the server claims
    assert outcome(result)["outcome"] == "ApprovalPending"  # what the policy decides
    assert effects(log) == []
    assert ledger_calls(policies, ledger_url, "crm:quote-3") == [("send_quote", "awaiting_approval")]


def test_a_run_resumed_by_a_new_connection_repeats_no_effect_and_runs_the_approved_call_once(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(policies, ledger_url, log, "deal-9")
    invoice = {"customer": "acme", "amount_cents": 5000}

    async def agent(client: ClientSession) -> list[types.CallToolResult]:
        # The same agent steps each time it (re)connects: a restarted agent replays its run from the start.
        return [
            await client.call_tool("upsert_contact", {"email": "ann@acme.io", "name": "Ann"}),
            await client.call_tool("create_invoice", invoice),
            await client.call_tool("send_quote", QUOTE),
        ]

    contact, created, waiting = session(proxy, agent)
    assert outcome(waiting)["outcome"] == "ApprovalPending"
    _decide(policies, ledger_url, "approve", outcome(waiting)["approval_id"])
    contact2, created2, quoted = session(proxy, agent)  # a new proxy process, the same event: the same run
    assert contact2.structured_content == contact.structured_content
    assert created2.structured_content == created.structured_content == {"invoice_id": "inv-acme-5000"}
    assert not quoted.is_error and quoted.structured_content == {"quote_id": "q-ann-120000"}
    session(proxy, agent)  # and once more, after everything ran
    assert [e["kind"] for e in effects(log)] == ["upsert", "invoice", "quote"]
    assert ledger_calls(policies, ledger_url, "crm:deal-9") == [
        ("upsert_contact", "completed"),
        ("create_invoice", "completed"),
        ("send_quote", "completed"),
    ]


def test_a_held_call_whose_arguments_have_no_exact_hash_is_refused_and_recorded(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(policies, ledger_url, log, "quote-5")
    refused = call(proxy, "send_quote", {"email": "ann@acme.io", "amount_cents": 2**60})  # beyond +/-2**53
    assert outcome(refused)["outcome"] == "ArgumentsRefused" and "cannot be hashed exactly" in text(refused)
    assert effects(log) == []
    assert ledger_calls(policies, ledger_url, "crm:quote-5") == [("send_quote", "denied")]
