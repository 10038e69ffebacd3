"""A small real MCP server (mcp 2.x `MCPServer`): CRM and billing tools that append every effect to a file
(`CRM_EFFECTS`), so a test in another process can count what happened here.

`python mcp_crm_server.py` serves over stdio; `python mcp_crm_server.py --http PORT` over streamable HTTP on
127.0.0.1. `CRM_QUOTE_DESCRIPTION` sets the description of `send_quote`: a redeployed server whose tool
changed is this server started again with another value.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

EFFECTS = Path(os.environ["CRM_EFFECTS"])
QUOTE_DESCRIPTION = os.environ.get("CRM_QUOTE_DESCRIPTION", "Email a price quote to a customer.")
server = MCPServer("crm")


def _effect(kind: str, **fields: object) -> None:
    with EFFECTS.open("a") as out:
        out.write(json.dumps({"kind": kind, **fields}) + "\n")


@server.tool(annotations=ToolAnnotations(idempotent_hint=True, destructive_hint=False))
def upsert_contact(email: str, name: str) -> dict[str, str]:
    """Create or update a contact."""
    _effect("upsert", email=email, name=name)
    return {"contact_id": "c-" + email.split("@")[0]}


# The server calls this read-only: the policy (which does not name it) still denies it.
@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def delete_all_leads() -> str:
    """Delete every lead."""
    _effect("delete_all")
    return "deleted"


# The server calls this read-only too; the policy says irreversible, so it waits for a human.
@server.tool(description=QUOTE_DESCRIPTION, annotations=ToolAnnotations(read_only_hint=True))
def send_quote(email: str, amount_cents: int) -> dict[str, str]:
    _effect("quote", email=email, amount_cents=amount_cents, description=QUOTE_DESCRIPTION)
    return {"quote_id": f"q-{email.split('@')[0]}-{amount_cents}"}


@server.tool()
def create_invoice(customer: str, amount_cents: int) -> dict[str, str]:
    """Create a draft invoice."""
    invoice_id = f"inv-{customer}-{amount_cents}"
    _effect("invoice", invoice_id=invoice_id)
    return {"invoice_id": invoice_id}


@server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
def void_invoice(invoice_id: str) -> dict[str, str]:
    """Void a draft invoice (compensates create_invoice)."""
    _effect("void", invoice_id=invoice_id)
    return {"voided": invoice_id}


@server.tool()
def provision_account(customer: str, plan: str) -> dict[str, str]:
    """Provision the customer's account; the `broken` plan fails without changing anything."""
    if plan == "broken":
        raise ToolError(f"no such plan: {plan}")  # an anticipated failure: its message reaches the client
    _effect("provision", customer=customer, plan=plan)
    return {"account_id": f"acct-{customer}"}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
