"""The onboarding agent: four tools over the stand-in systems, each wrapped with Guard.

A new customer signs up (a webhook event); the agent
  1. upserts the contact in the CRM            crm.upsert_contact           idempotent    auto
  2. opens the first invoice as a draft        billing.create_invoice       compensable   auto (small amounts)
  3. creates the customer's workspace          provisioning.create_workspace compensable  auto
  4. sends the welcome email                   email.send_welcome           irreversible  support approves
The classes and gates come from policies/onboarding.yaml, not from this file.

Beside each tool it declares what undoes it and how to look its effect up in the other system:
  billing.create_invoice         compensation billing.void_invoice (void)         reconcile by idempotency key
  provisioning.create_workspace  compensation provisioning.delete_workspace (undo) reconcile by idempotency key
  email.send_welcome             (an email cannot be unsent)                       reconcile by idempotency key
  crm.upsert_contact             nothing: a contact stays, an operator decides (the run halts for review)
When provisioning fails (its rule: on_failure compensate), Guard voids the invoice and halts the run for
review because the contact remains. When the email fails and its reconcile check proves nothing was sent
(on_failure retry), Guard sends it once more.

The sequence is scripted here (a real LLM agent would choose the calls; the guarded path is the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.onboarding import systems
from guard import (
    Found,
    Guard,
    GuardedTool,
    NotFound,
    ReconcileContext,
    RollbackContext,
    current_call,
    report_external_id,
)

__all__ = ["OnboardingTools", "app", "make_tools", "onboard"]

TEAM = "onboarding"
POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _key(tool: str) -> str:
    """The idempotency key Guard holds for this call, passed on to the other system so that a retry or a
    replay can never create a second invoice there either."""
    call = current_call()
    return call.idempotency_key or call.call_id if call is not None else tool


@dataclass(frozen=True)
class OnboardingTools:
    upsert_contact: GuardedTool
    create_invoice: GuardedTool
    create_workspace: GuardedTool
    send_welcome: GuardedTool


def _key_of(ctx: ReconcileContext | RollbackContext) -> str:
    """The key the tool passed to the other system (see `_key`)."""
    return ctx.idempotency_key or ctx.call_id


def _result_field(result: Any, name: str) -> str | None:
    value = result.get(name) if isinstance(result, dict) else None  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return str(value) if value else None  # pyright: ignore[reportUnknownArgumentType]


def make_tools(
    guard: Guard,
    state_dir: str | Path = systems.DEFAULT_STATE_DIR,
    *,
    provisioning_fail: bool | None = None,
    email_fail_once: bool | None = None,
) -> OnboardingTools:
    """Wrap the four tools with `guard`, with their compensations and reconcile checks.

    `provisioning_fail=True` makes the workspace step fail (the invoice is then voided by its compensation);
    `email_fail_once=True` makes the first welcome email fail before anything is sent (it is retried)."""
    crm = systems.CRM(state_dir)
    billing = systems.Billing(state_dir)
    provisioning = systems.Provisioning(state_dir, fail=provisioning_fail)
    email = systems.Email(state_dir, fail_once=email_fail_once)

    @guard.tool(name="crm.upsert_contact", external_ids={"contact": "contact_id"})
    def upsert_contact(email: str, name: str, company: str | None = None) -> dict[str, Any]:
        return {"contact_id": crm.upsert_contact(email, name, company)}

    @guard.tool(name="billing.create_invoice", external_ids={"invoice": "invoice_id"})
    def create_invoice(contact_id: str, amount_cents: int, currency: str = "EUR") -> dict[str, Any]:
        invoice_id = billing.create_invoice(
            contact_id, amount_cents, currency, idempotency_key=_key("billing.create_invoice")
        )
        # Saved in the ledger now, before anything else can go wrong inside this tool.
        report_external_id("invoice", invoice_id)
        return {"invoice_id": invoice_id, "status": "draft"}

    @create_invoice.compensation(name="billing.void_invoice", kind="void")
    def void_invoice(ctx: RollbackContext) -> dict[str, Any]:
        """Void the draft this run opened. Its id is in the ledger (reported the moment billing gave it);
        if the create call's outcome was unknown, billing is asked by the call's idempotency key."""
        invoice_id = ctx.external_ids.get("invoice") or _result_field(ctx.result, "invoice_id")
        if invoice_id is None:
            row = billing.find_by_key(_key_of(ctx))
            if row is None:
                return {"invoice_id": None, "status": "never_created"}
            invoice_id = str(row["invoice_id"])
        report_external_id("invoice", invoice_id)  # the void call names the invoice it voided, in the ledger
        return {"invoice_id": invoice_id, "status": billing.void_invoice(invoice_id)}

    @create_invoice.reconcile
    def find_invoice(ctx: ReconcileContext) -> Found | NotFound:
        row = billing.find_by_key(_key_of(ctx))
        if row is None:
            return NotFound()
        return Found(
            result={"invoice_id": row["invoice_id"], "status": row["status"]},
            external_ids={"invoice": str(row["invoice_id"])},
        )

    @guard.tool(name="provisioning.create_workspace", external_ids={"workspace": "workspace_id"})
    def create_workspace(contact_id: str, plan: str) -> dict[str, Any]:
        workspace_id = provisioning.create_workspace(
            contact_id, plan, idempotency_key=_key("provisioning.create_workspace")
        )
        return {"workspace_id": workspace_id}

    @create_workspace.compensation(name="provisioning.delete_workspace", kind="undo")
    def delete_workspace(ctx: RollbackContext) -> dict[str, Any]:
        """Delete the workspace this run created seconds ago (found by its id, or by the call's key)."""
        workspace_id = ctx.external_ids.get("workspace") or _result_field(ctx.result, "workspace_id")
        if workspace_id is None:
            row = provisioning.find_by_key(_key_of(ctx))
            if row is None:
                return {"workspace_id": None, "status": "never_created"}
            workspace_id = str(row["workspace_id"])
        report_external_id("workspace", workspace_id)
        return {"workspace_id": workspace_id, "status": provisioning.delete_workspace(workspace_id)}

    @create_workspace.reconcile
    def find_workspace(ctx: ReconcileContext) -> Found | NotFound:
        row = provisioning.find_by_key(_key_of(ctx))
        if row is None:
            return NotFound()
        return Found(result={"workspace_id": row["workspace_id"]}, external_ids={"workspace": str(row["workspace_id"])})

    @guard.tool(name="email.send_welcome", external_ids={"message": "message_id"})
    def send_welcome(to: str, workspace_id: str) -> dict[str, Any]:
        return {"message_id": email.send_welcome(to, workspace_id, idempotency_key=_key("email.send_welcome"))}

    # No compensation: an email cannot be unsent. The reconcile check is what makes a retry safe: the
    # outbox is asked for this call's key, and only a provable "not sent" lets Guard send it again.
    @send_welcome.reconcile
    def find_welcome(ctx: ReconcileContext) -> Found | NotFound:
        row = email.find_by_key(_key_of(ctx))
        if row is None:
            return NotFound()
        return Found(result={"message_id": row["message_id"]}, external_ids={"message": str(row["message_id"])})

    # crm.upsert_contact declares no compensation: deleting a customer's contact is not the agent's call.
    # When a later step fails, the contact remains and the run halts for review, naming it.

    return OnboardingTools(upsert_contact, create_invoice, create_workspace, send_welcome)


def app(db: str | None = None) -> Guard:
    """This agent's Guard with its tools, compensations and reconcile checks registered, for the operator
    commands that run them outside the agent (e.g. `guard runs compensate RUN --app
    examples.onboarding.agent:app --db examples/onboarding/state/guard.db`)."""
    guard = Guard(policies=POLICIES, db=db)
    make_tools(guard)
    return guard


def onboard(
    guard: Guard, customer: dict[str, Any], event_id: str, *, tools: OnboardingTools | None = None
) -> dict[str, Any]:
    """Handle one `customer.signed_up` event. The run id is `onboarding:<event_id>`, so the same event
    delivered twice lands in the same run. Returns the ids the four systems gave back."""
    tools = tools or make_tools(guard)
    with guard.run(TEAM, source_event_id=event_id, subject=customer["email"]) as run:
        contact = tools.upsert_contact(email=customer["email"], name=customer["name"], company=customer.get("company"))
        invoice = tools.create_invoice(
            contact_id=contact["contact_id"],
            amount_cents=customer["first_invoice_cents"],
            currency=customer.get("currency", "EUR"),
        )
        workspace = tools.create_workspace(contact_id=contact["contact_id"], plan=customer["plan"])
        # Irreversible: the policy holds this call until someone with the `support` role approves it.
        message = tools.send_welcome(to=customer["email"], workspace_id=workspace["workspace_id"])
        return {"run_id": run.run_id, **contact, **invoice, **workspace, **message}
