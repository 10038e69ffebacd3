"""A small CRM as an MCP server (mcp 2.x `MCPServer`, stdio): contacts, quotes and invoices kept in a JSON file
(`CRM_STATE`), so what really happened can be read after the run. It knows nothing of Guard."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

STATE = Path(os.environ.get("CRM_STATE", "crm-state.json"))
server = MCPServer("acme-crm")


def _load() -> dict[str, Any]:
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"contacts": {}, "quotes": [], "invoices": {}}


def _save(data: dict[str, Any]) -> None:
    STATE.write_text(json.dumps(data, indent=2))


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def find_contact(email: str) -> dict[str, Any]:
    """Look a contact up by email."""
    contact = _load()["contacts"].get(email)
    return {"found": contact is not None, "contact": contact}


@server.tool(annotations=ToolAnnotations(idempotent_hint=True, destructive_hint=False))
def upsert_contact(email: str, name: str, company: str) -> dict[str, str]:
    """Create or update a contact."""
    data = _load()
    data["contacts"][email] = {"name": name, "company": company}
    _save(data)
    return {"contact_id": f"c-{email.split('@')[0]}"}


# The server says read-only. It is not; the team's policy denies it.
@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def delete_contacts(company: str) -> dict[str, int]:
    """Delete every contact of a company."""
    data = _load()
    gone = [e for e, c in data["contacts"].items() if c["company"] == company]
    for email in gone:
        del data["contacts"][email]
    _save(data)
    return {"deleted": len(gone)}


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def send_quote(email: str, amount_cents: int) -> dict[str, str]:
    """Email a price quote to a contact."""
    data = _load()
    quote_id = f"q-{len(data['quotes']) + 1}"
    data["quotes"].append({"quote_id": quote_id, "email": email, "amount_cents": amount_cents})
    _save(data)
    return {"quote_id": quote_id}


@server.tool()
def create_invoice(customer: str, amount_cents: int) -> dict[str, str]:
    """Create a draft invoice."""
    data = _load()
    invoice_id = f"inv-{len(data['invoices']) + 1}"
    data["invoices"][invoice_id] = {"customer": customer, "amount_cents": amount_cents, "status": "draft"}
    _save(data)
    return {"invoice_id": invoice_id}


@server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
def void_invoice(invoice_id: str) -> dict[str, str]:
    """Void a draft invoice."""
    data = _load()
    data["invoices"][invoice_id]["status"] = "void"
    _save(data)
    return {"voided": invoice_id}


if __name__ == "__main__":
    server.run("stdio")
