"""The onboarding agent: four tools over the stand-in systems, each wrapped with Guard.

A new customer signs up (a webhook event); the agent
  1. upserts the contact in the CRM            crm.upsert_contact           idempotent    auto
  2. opens the first invoice as a draft        billing.create_invoice       compensable   auto (small amounts)
  3. creates the customer's workspace          provisioning.create_workspace compensable  auto
  4. sends the welcome email                   email.send_welcome           irreversible  support approves
The classes and gates come from policies/onboarding.yaml, not from this file.

The sequence is scripted here (a real LLM agent would choose the calls; the guarded path is the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.onboarding import systems
from guard import Guard, GuardedTool, current_call, report_external_id

__all__ = ["OnboardingTools", "make_tools", "onboard"]

TEAM = "onboarding"


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


def make_tools(guard: Guard, state_dir: str | Path = systems.DEFAULT_STATE_DIR, *,
               provisioning_fail: bool | None = None) -> OnboardingTools:
    """Wrap the four tools with `guard`. `provisioning_fail=True` makes the workspace step fail
    (the seam for the compensation example; nothing compensates yet)."""
    crm = systems.CRM(state_dir)
    billing = systems.Billing(state_dir)
    provisioning = systems.Provisioning(state_dir, fail=provisioning_fail)
    email = systems.Email(state_dir)

    @guard.tool(name="crm.upsert_contact", external_ids={"contact": "contact_id"})
    def upsert_contact(email: str, name: str, company: str | None = None) -> dict[str, Any]:
        return {"contact_id": crm.upsert_contact(email, name, company)}

    @guard.tool(name="billing.create_invoice", external_ids={"invoice": "invoice_id"})
    def create_invoice(contact_id: str, amount_cents: int, currency: str = "EUR") -> dict[str, Any]:
        invoice_id = billing.create_invoice(contact_id, amount_cents, currency,
                                            idempotency_key=_key("billing.create_invoice"))
        # Saved in the ledger now, before anything else can go wrong inside this tool.
        report_external_id("invoice", invoice_id)
        return {"invoice_id": invoice_id, "status": "draft"}

    @guard.tool(name="provisioning.create_workspace", external_ids={"workspace": "workspace_id"})
    def create_workspace(contact_id: str, plan: str) -> dict[str, Any]:
        workspace_id = provisioning.create_workspace(contact_id, plan,
                                                     idempotency_key=_key("provisioning.create_workspace"))
        return {"workspace_id": workspace_id}

    @guard.tool(name="email.send_welcome", external_ids={"message": "message_id"})
    def send_welcome(to: str, workspace_id: str) -> dict[str, Any]:
        return {"message_id": email.send_welcome(to, workspace_id, idempotency_key=_key("email.send_welcome"))}

    return OnboardingTools(upsert_contact, create_invoice, create_workspace, send_welcome)


def onboard(guard: Guard, customer: dict[str, Any], event_id: str, *,
            tools: OnboardingTools | None = None) -> dict[str, Any]:
    """Handle one `customer.signed_up` event. The run id is `onboarding:<event_id>`, so the same event
    delivered twice lands in the same run. Returns the ids the four systems gave back."""
    tools = tools or make_tools(guard)
    with guard.run(TEAM, source_event_id=event_id, subject=customer["email"]) as run:
        contact = tools.upsert_contact(email=customer["email"], name=customer["name"],
                                       company=customer.get("company"))
        invoice = tools.create_invoice(contact_id=contact["contact_id"], amount_cents=customer["first_invoice_cents"],
                                       currency=customer.get("currency", "EUR"))
        workspace = tools.create_workspace(contact_id=contact["contact_id"], plan=customer["plan"])
        # Irreversible: the policy holds this call until someone with the `support` role approves it.
        message = tools.send_welcome(to=customer["email"], workspace_id=workspace["workspace_id"])
        return {"run_id": run.run_id, **contact, **invoice, **workspace, **message}
