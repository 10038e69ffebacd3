"""The lead funnel's systems in memory, and its tools as real Agents SDK function tools over them.

Every effect is kept, so a test can say how many times something happened in the other system."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents import FunctionTool, function_tool

# SDK tool name -> policy tool name (model-facing names cannot hold dots with most providers).
NAMES = {
    "lookup_company": "enrichment.lookup",
    "upsert_contact": "crm.upsert_contact",
    "create_deal": "crm.create_deal",
    "notify_sales": "slack.notify_sales",
    "send_prospect_email": "email.send_prospect",
    "delete_all_leads": "crm.delete_all_leads",
}


@dataclass
class Funnel:
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])
    upserts: int = 0
    deals: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])
    closed: list[str] = field(default_factory=list[str])
    notices: list[str] = field(default_factory=list[str])
    emails: list[dict[str, str]] = field(default_factory=list[dict[str, str]])
    deletes: int = 0
    slack_down: bool = False

    def tools(self) -> list[FunctionTool]:
        world = self

        @function_tool
        def lookup_company(domain: str) -> dict[str, Any]:
            """Look a company up by its web domain."""
            return {"domain": domain, "employees": 120}

        @function_tool
        def upsert_contact(email: str, name: str) -> dict[str, Any]:
            """Create or update the lead's contact in the CRM."""
            world.upserts += 1
            contact_id = f"c-{len(world.contacts) + 1}" if email not in world.contacts else world.contacts[email]["id"]
            world.contacts[email] = {"id": contact_id, "name": name}
            return {"contact_id": contact_id}

        @function_tool
        def create_deal(contact_id: str, amount_cents: int) -> dict[str, Any]:
            """Open a deal for a contact."""
            deal_id = f"d-{len(world.deals) + 1}"
            world.deals[deal_id] = {"contact_id": contact_id, "amount_cents": amount_cents}
            return {"deal_id": deal_id}

        @function_tool
        async def notify_sales(deal_id: str) -> str:
            """Tell the sales channel about a new deal."""
            if world.slack_down:
                raise ConnectionError("slack is down")
            world.notices.append(deal_id)
            return f"sales told about {deal_id}"

        @function_tool
        def send_prospect_email(email: str, template: str) -> str:
            """Send the prospect an email."""
            world.emails.append({"email": email, "template": template})
            return f"sent {template} to {email}"

        @function_tool
        def delete_all_leads() -> str:
            """Delete every lead."""
            world.deletes += 1
            return "deleted"

        return [lookup_company, upsert_contact, create_deal, notify_sales, send_prospect_email, delete_all_leads]
