"""When a chain fails: compensations in reverse order, reconcile checks, retry of a proven-clean failure,
verification, named run states. Real ledger file, real Guard, the seeds' onboarding chain."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guard import (
    CallFailed,
    CallInDoubt,
    Found,
    Guard,
    GuardedTool,
    NotFound,
    ReconcileContext,
    RollbackContext,
)

SHOP_POLICY = """\
team: shop
reviewers: {ops: [ops]}
rules:
  - name: contact
    tools: [crm.upsert_contact]
    class: idempotent
  - name: invoice
    tools: [billing.create_invoice]
    class: compensable
  - name: void
    tools: [billing.void_invoice]
    class: idempotent
    retry: {attempts: 1, timeout: 200ms}
  - name: workspace
    tools: [provisioning.create_workspace]
    class: compensable
    on_failure: compensate
  - name: delete-workspace
    tools: [provisioning.delete_workspace]
    class: idempotent
  - name: email
    tools: [email.send_welcome]
    class: compensable
    on_failure: retry
  - name: slow
    tools: [billing.slow_invoice]
    class: compensable
    retry: {timeout: 50ms}
    on_failure: halt
"""


class World:
    """Stand-in systems in memory: every effect, keyed by the idempotency key Guard handed over."""

    def __init__(self) -> None:
        self.invoices: dict[str, dict[str, Any]] = {}
        self.workspaces: dict[str, str] = {}
        self.emails: list[str] = []
        self.provisioning_fails = False
        self.email_failures = 0
        self.void_fails = False
        self.void_hangs: threading.Event | None = None
        self.log: list[str] = []


@pytest.fixture
def shop(tmp_path: Path, db_path: Path) -> Iterator[tuple[Guard, World, dict[str, GuardedTool]]]:
    policies = tmp_path / "shop-policies"
    policies.mkdir()
    (policies / "shop.yaml").write_text(SHOP_POLICY)
    guard = Guard(policies=policies, db=str(db_path), log_level="error")
    world = World()
    from guard import current_call

    def key() -> str:
        call = current_call()
        assert call is not None and call.idempotency_key is not None
        return call.idempotency_key

    @guard.tool(name="crm.upsert_contact", external_ids={"contact": "contact_id"})
    def upsert_contact(email: str) -> dict[str, str]:
        world.log.append("contact")
        return {"contact_id": "ct_" + email.split("@")[0]}

    @guard.tool(name="billing.create_invoice", external_ids={"invoice": "invoice_id"})
    def create_invoice(contact_id: str, amount_cents: int) -> dict[str, str]:
        invoice_id = f"inv_{len(world.invoices) + 1}"
        world.invoices[invoice_id] = {"status": "draft", "key": key(), "contact": contact_id}
        world.log.append("invoice")
        return {"invoice_id": invoice_id}

    @create_invoice.compensation(name="billing.void_invoice", kind="void")
    def void_invoice(ctx: RollbackContext) -> dict[str, str]:
        if world.void_fails:
            raise RuntimeError("billing API refused the void")
        if world.void_hangs is not None:
            world.void_hangs.wait(10)
        invoice_id = ctx.external_ids["invoice"]
        world.invoices[invoice_id]["status"] = "void"
        world.log.append(f"void {invoice_id} because {ctx.failure}")
        return {"voided": invoice_id}

    @guard.tool(name="provisioning.create_workspace", external_ids={"workspace": "workspace_id"})
    def create_workspace(contact_id: str) -> dict[str, str]:
        if world.provisioning_fails:
            raise RuntimeError("provisioning API 503")
        workspace_id = f"ws_{contact_id}"
        world.workspaces[workspace_id] = key()
        world.log.append("workspace")
        return {"workspace_id": workspace_id}

    @create_workspace.compensation(name="provisioning.delete_workspace", kind="undo")
    def delete_workspace(ctx: RollbackContext) -> None:
        world.workspaces.pop(ctx.external_ids["workspace"], None)
        world.log.append("delete workspace")

    @guard.tool(name="email.send_welcome", external_ids={"message": "message_id"})
    def send_welcome(to: str) -> dict[str, str]:
        if world.email_failures:
            world.email_failures -= 1
            raise ConnectionError("smtp relay reset the connection")
        world.emails.append(key())
        world.log.append("email")
        return {"message_id": f"msg_{len(world.emails)}"}

    @send_welcome.reconcile
    def find_email(ctx: ReconcileContext) -> Found | NotFound | None:
        if ctx.idempotency_key in world.emails:
            return Found(result={"message_id": "msg_found"}, external_ids={"message": "msg_found"})
        return NotFound()

    tools = {"contact": upsert_contact, "invoice": create_invoice, "workspace": create_workspace, "email": send_welcome}
    try:
        yield guard, world, tools
    finally:
        guard.close()


def onboard(guard: Guard, tools: dict[str, GuardedTool], event: str) -> str:
    with guard.run("shop", source_event_id=event) as run:
        contact = tools["contact"](email="ada@example.com")
        tools["invoice"](contact_id=contact["contact_id"], amount_cents=4900)
        tools["workspace"](contact_id=contact["contact_id"])
        tools["email"](to="ada@example.com")
    return run.run_id


def test_provisioning_fails_after_the_invoice_the_invoice_is_voided_no_email_and_the_run_names_the_state(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    guard, world, tools = shop
    world.provisioning_fails = True
    with pytest.raises(CallFailed, match="provisioning API 503") as failed:
        onboard(guard, tools, "evt-1")
    assert world.invoices["inv_1"]["status"] == "void"
    assert world.emails == []  # the welcome email is never sent
    assert world.log[:2] == ["contact", "invoice"] and world.log[2].startswith("void inv_1 because provisioning")
    run = guard.ledger.get_run(failed.value.run_id)
    assert run is not None
    assert (run.state, run.status_label, run.requires_review) == (
        "pending_review",
        "invoice_created_provisioning_failed",
        True,
    )
    assert run.error_summary is not None and "Undone: #2 billing.create_invoice" in run.error_summary
    assert "Remains: #1 crm.upsert_contact" in run.error_summary  # the contact has no compensation
    assert run.last_call_id is not None
    calls = {c.tool: c for c in guard.ledger.calls_of(run.run_id)}
    assert calls["billing.create_invoice"].state == "rolled_back"
    assert calls["provisioning.create_workspace"].state == "failed"
    void = calls["billing.void_invoice"]
    assert (void.state, void.compensates_call_id) == ("completed", calls["billing.create_invoice"].call_id)
    assert void.offered_key == f"compensate:{calls['billing.create_invoice'].call_id}"
    assert guard.ledger.verify_chain().ok


def test_compensations_run_newest_first_and_what_has_none_keeps_the_run_for_review(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    guard, world, tools = shop
    made: list[dict[str, str]] = []
    with guard.run("shop", source_event_id="evt-2") as run, pytest.raises(CallFailed):
        contact = tools["contact"](email="bob@example.com")
        made.append(tools["invoice"](contact_id=contact["contact_id"], amount_cents=100))
        made.append(tools["workspace"](contact_id=contact["contact_id"]))
        world.provisioning_fails = True
        tools["workspace"](contact_id="other")
    assert made == [{"invoice_id": "inv_1"}, {"workspace_id": "ws_ct_bob"}]
    order = [line for line in world.log if line.startswith(("void", "delete"))]
    assert order[0] == "delete workspace" and order[1].startswith("void inv_1")  # reverse start order
    assert world.workspaces == {} and world.invoices["inv_1"]["status"] == "void"
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and record.state == "pending_review"  # the contact has no compensation
    assert record.status_label == "workspace_created_provisioning_failed"


def test_a_run_whose_every_effect_is_undone_ends_rolled_back(shop: tuple[Guard, World, dict[str, GuardedTool]]) -> None:
    guard, world, tools = shop
    with guard.run("shop", source_event_id="evt-2b") as run, pytest.raises(CallFailed):
        tools["invoice"](contact_id="ct_1", amount_cents=100)
        world.provisioning_fails = True
        tools["workspace"](contact_id="ct_1")
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and (record.state, record.status_label) == (
        "rolled_back",
        "invoice_created_provisioning_failed",
    )
    assert world.invoices["inv_1"]["status"] == "void"


def test_a_compensation_that_fails_marks_rollback_failed_stops_the_saga_and_lists_what_remains(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    guard, world, tools = shop
    world.provisioning_fails = True
    world.void_fails = True
    with pytest.raises(CallFailed) as failed:
        onboard(guard, tools, "evt-3")
    calls = {c.tool: c for c in guard.ledger.calls_of(failed.value.run_id)}
    assert calls["billing.create_invoice"].state == "rollback_failed"
    assert calls["billing.void_invoice"].state == "failed"
    run = guard.ledger.get_run(failed.value.run_id)
    assert run is not None and run.state == "pending_review"
    assert run.error_summary is not None and "compensation billing.void_invoice failed" in run.error_summary
    assert world.invoices["inv_1"]["status"] == "draft"  # nothing pretends it was undone


def test_the_email_fails_cleanly_once_only_the_email_is_retried_and_nothing_is_rolled_back(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    guard, world, tools = shop
    world.email_failures = 1
    run_id = onboard(guard, tools, "evt-4")
    assert world.log == ["contact", "invoice", "workspace", "email"]
    assert len(world.emails) == 1
    calls = {c.tool: c for c in guard.ledger.calls_of(run_id)}
    assert calls["email.send_welcome"].state == "completed" and calls["email.send_welcome"].attempts == 2
    assert all(c.state == "completed" for c in calls.values())
    run = guard.ledger.get_run(run_id)
    assert run is not None and run.state == "completed"


def test_a_commit_whose_response_was_lost_is_found_by_the_reconcile_check_and_never_sent_twice(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    guard, world, tools = shop
    send = tools["email"]
    original = send.spec.fn

    def commit_then_drop(to: str) -> Any:
        original(to=to)
        raise ConnectionError("connection reset after the relay accepted the message")

    object.__setattr__(send.spec, "fn", commit_then_drop)
    with guard.run("shop", source_event_id="evt-5") as run:
        result = send(to="ada@example.com")
    assert result == {"message_id": "msg_found"}
    assert len(world.emails) == 1
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "completed" and call.external_id_map == {"message": "msg_found"}


def test_a_timed_out_call_without_a_reconcile_check_is_in_doubt_and_named_so(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    import threading

    guard, _, _ = shop
    release = threading.Event()

    @guard.tool(name="billing.slow_invoice")
    def slow_invoice(amount_cents: int) -> None:
        release.wait(5)

    try:
        with guard.run("shop", source_event_id="evt-6") as run, pytest.raises(CallInDoubt):
            slow_invoice(amount_cents=1)
    finally:
        release.set()
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and (record.state, record.status_label) == ("pending_review", "billing_in_doubt")


def test_a_verification_that_does_not_confirm_fails_the_call_and_sends_the_run_to_review(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    guard, world, tools = shop

    @tools["workspace"].verify
    def workspace_is_up(result: Any, ctx: ReconcileContext) -> bool:
        return False  # the page did not update: a pushed change is not proof

    with pytest.raises(CallFailed, match="verification"), guard.run("shop", source_event_id="evt-7") as run:
        tools["workspace"](contact_id="ct_x")
    assert world.workspaces  # the effect happened ...
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "failed"  # ... but unconfirmed: never reported as completed
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and record.state == "pending_review" and record.requires_review


def test_credentials_failing_mid_run_go_straight_to_review_without_compensating(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    guard, world, tools = shop
    workspace = tools["workspace"]

    def expired_token(contact_id: str) -> None:
        raise PermissionError("provisioning API: token expired")

    object.__setattr__(workspace.spec, "fn", expired_token)
    with pytest.raises(CallFailed), guard.run("shop", source_event_id="evt-8") as run:
        tools["invoice"](contact_id="ct_1", amount_cents=100)
        workspace(contact_id="ct_1")
    assert world.invoices["inv_1"]["status"] == "draft"  # nothing undone with broken credentials
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and (record.state, record.status_label) == (
        "pending_review",
        "invoice_created_provisioning_credentials_failed",
    )
    assert record.next_safe_action is not None and "credentials" in record.next_safe_action


def test_a_write_whose_retries_ran_out_goes_straight_to_review(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    guard, _, tools = shop
    contact = tools["contact"]
    tries: list[str] = []

    def crm_down(email: str) -> None:
        tries.append(email)
        raise ConnectionError("crm unavailable")

    object.__setattr__(contact.spec, "fn", crm_down)
    with pytest.raises(CallFailed), guard.run("shop", source_event_id="evt-9") as run:
        contact(email="ada@example.com")
    assert len(tries) == 3  # the policy's bounded retries for a repeat-safe write
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and (record.state, record.status_label) == ("pending_review", "crm_retries_exhausted")


def test_a_reconcile_check_that_contradicts_the_ledger_sends_the_call_to_review(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    from guard import report_external_id

    guard, _, tools = shop
    send = tools["email"]

    def reported_then_dropped(to: str) -> None:
        report_external_id("message", "msg_A")
        raise ConnectionError("connection reset")

    object.__setattr__(send.spec, "fn", reported_then_dropped)
    send.reconcile(lambda ctx: Found(result={"message_id": "msg_B"}, external_ids={"message": "msg_B"}))
    with pytest.raises(CallInDoubt, match="disagree"), guard.run("shop", source_event_id="evt-10") as run:
        send(to="ada@example.com")
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "in_doubt" and call.external_id_map == {"message": "msg_A"}
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and (record.state, record.status_label) == ("pending_review", "email_ledger_disagrees")


def test_a_compensation_that_hangs_past_its_timeout_is_in_doubt_and_the_run_halts_without_looping(
    shop: tuple[Guard, World, dict[str, GuardedTool]],
) -> None:
    guard, world, tools = shop
    world.provisioning_fails = True
    world.void_hangs = threading.Event()
    try:
        with pytest.raises(CallFailed) as failed:
            onboard(guard, tools, "evt-11")
    finally:
        world.void_hangs.set()
    calls = {c.tool: c for c in guard.ledger.calls_of(failed.value.run_id)}
    assert calls["billing.create_invoice"].state == "rollback_failed"
    assert calls["billing.void_invoice"].state == "in_doubt"  # the void may still land: never assumed
    run = guard.ledger.get_run(failed.value.run_id)
    assert run is not None and run.state == "pending_review"
    assert run.error_summary is not None and "compensation billing.void_invoice failed" in run.error_summary
