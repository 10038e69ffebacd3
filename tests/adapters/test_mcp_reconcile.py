"""The ledger stays truthful when the upstream fails mid-call: `--reconcile create_invoice=find_invoice` declares
the upstream tool that finds a call's effect by the idempotency key Guard sent with it. The CRM server makes the
invoice and then dies before answering (`CRM_AFTER_INVOICE=crash`), or never answers (`hang`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters
from mcp_world import effects, ledger_calls, outcome, server_env, session, stdio_proxy, text, write_policy

INVOICE = {"customer": "acme", "amount_cents": 5000}


def call(proxy: StdioServerParameters, tool: str, args: dict[str, Any]) -> types.CallToolResult:
    """A client that lists the tools first (the SDK checks results against the listed output schemas)."""

    async def work(client: ClientSession) -> types.CallToolResult:
        await client.list_tools()
        return await client.call_tool(tool, args)

    return session(proxy, work)


@pytest.mark.parametrize("after", ["crash", "hang"])
def test_an_invoice_whose_answer_was_lost_is_found_by_the_declared_look_up_and_recorded_completed(
    tmp_path: Path, ledger_url: str, after: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(
        policies,
        ledger_url,
        log,
        f"lost-{after}",
        "--reconcile",
        "create_invoice=find_invoice",
        "--call-timeout",
        "3",
        env=server_env(log, CRM_AFTER_INVOICE=after),
    )
    result = call(proxy, "create_invoice", INVOICE)
    assert not result.is_error, text(result)
    assert result.structured_content == {"invoice_id": "inv-acme-5000"}  # what the look-up found
    (made,) = effects(log)
    assert made["kind"] == "invoice" and made["key"]  # the key Guard sent upstream, read by the server
    assert ledger_calls(policies, ledger_url, f"crm:lost-{after}") == [("create_invoice", "completed")]


@pytest.mark.parametrize("after", ["crash", "hang"])
def test_without_a_look_up_an_unanswered_effect_call_is_in_doubt_not_failed(
    tmp_path: Path, ledger_url: str, after: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(
        policies, ledger_url, log, f"doubt-{after}", "--call-timeout", "3", env=server_env(log, CRM_AFTER_INVOICE=after)
    )
    result = call(proxy, "create_invoice", INVOICE)
    assert outcome(result)["outcome"] == "CallInDoubt" and outcome(result)["state"] == "in_doubt"
    assert "may or may not have happened" in text(result)
    assert [e["kind"] for e in effects(log)] == ["invoice"]
    assert ledger_calls(policies, ledger_url, f"crm:doubt-{after}") == [("create_invoice", "in_doubt")]
