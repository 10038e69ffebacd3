"""Compensation through the MCP proxy: `--compensate create_invoice=void_invoice` declares the upstream tool that
undoes another; a later failure in the run makes Guard's saga call it. A real client over stdio to the proxy in
front of the real CRM server; the server's effects file says what happened there."""

from __future__ import annotations

from pathlib import Path

import mcp_types as types
from mcp.client.session import ClientSession
from mcp_world import effects, outcome, session, stdio_proxy, text, write_policy

from guard import Guard

INVOICE = {"customer": "acme", "amount_cents": 5000}


async def _onboard(client: ClientSession) -> list[types.CallToolResult]:
    return [
        await client.call_tool("create_invoice", INVOICE),
        await client.call_tool("provision_account", {"customer": "acme", "plan": "broken"}),
        await client.call_tool("create_invoice", INVOICE),
    ]


def test_a_failure_after_an_invoice_voids_it_through_the_declared_upstream_compensation(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(policies, ledger_url, log, "onboard-1", "--compensate", "create_invoice=void_invoice")
    created, failed, after = session(proxy, _onboard)

    assert created.structured_content == {"invoice_id": "inv-acme-5000"}
    assert outcome(failed)["outcome"] == "CallFailed" and "rolled_back" in outcome(failed)["message"]
    assert "no such plan" in text(failed)  # the upstream tool's own error, recorded and passed on
    assert outcome(after)["outcome"] in ("RunNotRunning", "CallDenied")  # the run is over: nothing more runs
    assert [(e["kind"], e["invoice_id"]) for e in effects(log)] == [
        ("invoice", "inv-acme-5000"),
        ("void", "inv-acme-5000"),
    ]
    with Guard(policies=policies, db=ledger_url, log_level="error") as guard:
        run = guard.ledger.get_run("crm:onboard-1")
        calls = guard.ledger.calls_of("crm:onboard-1")
        assert run is not None and run.state == "rolled_back"
        invoice = next(c for c in calls if c.tool == "create_invoice" and c.compensates_call_id is None)
        void = next(c for c in calls if c.tool == "void_invoice")
        assert invoice.state == "rolled_back"
        assert (void.state, void.compensates_call_id, void.idempotency_key) == (
            "completed",
            invoice.call_id,
            f"compensate:{invoice.call_id}",
        )


def test_a_compensation_that_cannot_be_called_as_declared_halts_the_run_for_review(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    # void_invoice needs an invoice_id; a contact upsert has none to give: the saga must not guess.
    proxy = stdio_proxy(
        policies,
        ledger_url,
        log,
        "onboard-2",
        "--compensate",
        "create_invoice=void_invoice",
        "--compensate",
        "upsert_contact=void_invoice",
    )

    async def work(client: ClientSession) -> types.CallToolResult:
        await client.call_tool("create_invoice", INVOICE)
        await client.call_tool("upsert_contact", {"email": "ann@acme.io", "name": "Ann"})
        return await client.call_tool("provision_account", {"customer": "acme", "plan": "broken"})

    failed = session(proxy, work)
    assert outcome(failed)["outcome"] == "CallFailed" and "pending_review" in outcome(failed)["message"]
    assert [e["kind"] for e in effects(log)] == ["invoice", "upsert"]  # nothing voided out of order
    with Guard(policies=policies, db=ledger_url, log_level="error") as guard:
        run = guard.ledger.get_run("crm:onboard-2")
        assert run is not None and run.state == "pending_review" and run.requires_review
        states = {c.tool: c.state for c in guard.ledger.calls_of("crm:onboard-2") if c.compensates_call_id is None}
        assert states == {
            "create_invoice": "completed",
            "upsert_contact": "rollback_failed",
            "provision_account": "failed",
        }
        assert "invoice_id" in (run.error_summary or "")
