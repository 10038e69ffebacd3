"""The lead funnel's systems in memory, with its tools as plain methods, for every framework adapter's tests.

Every effect is kept, so a test can say how many times something happened in the other system. Each framework's
module (`lc_world`, `oa_world`, `pai_world`) turns `Funnel.functions()` into that framework's tools."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Framework tool name -> policy tool name (model-facing names cannot hold dots with most providers).
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

    def lookup_company(self, domain: str) -> dict[str, Any]:
        """Look a company up by its web domain."""
        return {"domain": domain, "employees": 120}

    def upsert_contact(self, email: str, name: str) -> dict[str, Any]:
        """Create or update the lead's contact in the CRM."""
        self.upserts += 1
        contact_id = self.contacts[email]["id"] if email in self.contacts else f"c-{len(self.contacts) + 1}"
        self.contacts[email] = {"id": contact_id, "name": name}
        return {"contact_id": contact_id}

    def create_deal(self, contact_id: str, amount_cents: int) -> dict[str, Any]:
        """Open a deal for a contact."""
        deal_id = f"d-{len(self.deals) + 1}"
        self.deals[deal_id] = {"contact_id": contact_id, "amount_cents": amount_cents}
        return {"deal_id": deal_id}

    def notify_sales(self, deal_id: str) -> str:
        """Tell the sales channel about a new deal."""
        if self.slack_down:
            raise ConnectionError("slack is down")
        self.notices.append(deal_id)
        return f"sales told about {deal_id}"

    def send_prospect_email(self, email: str, template: str) -> str:
        """Send the prospect an email."""
        self.emails.append({"email": email, "template": template})
        return f"sent {template} to {email}"

    def delete_all_leads(self) -> str:
        """Delete every lead."""
        self.deletes += 1
        return "deleted"

    def functions(self) -> list[Callable[..., Any]]:
        """The funnel's tools in the order agents get them (names, docstrings and hints are what a model sees)."""
        return [
            self.lookup_company,
            self.upsert_contact,
            self.create_deal,
            self.notify_sales,
            self.send_prospect_email,
            self.delete_all_leads,
        ]
