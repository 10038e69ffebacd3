"""A small real MCP server (mcp 2.x `MCPServer`): CRM and billing tools that append every effect to a file
(`CRM_EFFECTS`), so a test in another process can count what happened here.

`python mcp_crm_server.py` serves over stdio; `python mcp_crm_server.py --http PORT` over streamable HTTP on
127.0.0.1. `CRM_QUOTE_DESCRIPTION` sets the description of `send_quote`: a redeployed server whose tool
changed is this server started again with another value. `CRM_AFTER_INVOICE=crash` makes the server die right
after an invoice is made, before it answers (`hang`: it never answers); `find_invoice` looks an invoice up by
the idempotency key Guard sent with the call that made it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from guard_mcp import upstream_key
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import Completion, ToolAnnotations

EFFECTS = Path(os.environ["CRM_EFFECTS"])
QUOTE_DESCRIPTION = os.environ.get("CRM_QUOTE_DESCRIPTION", "Email a price quote to a customer.")
AFTER_INVOICE = os.environ.get("CRM_AFTER_INVOICE", "")
server = MCPServer("crm")


def _effects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EFFECTS.read_text().splitlines()] if EFFECTS.exists() else []


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
async def create_invoice(customer: str, amount_cents: int, ctx: Context) -> dict[str, str]:
    """Create a draft invoice."""
    invoice_id = f"inv-{customer}-{amount_cents}"
    _effect("invoice", invoice_id=invoice_id, key=upstream_key(ctx.request_context.meta))
    if AFTER_INVOICE == "crash":
        os._exit(3)  # the effect exists; the answer never leaves
    if AFTER_INVOICE == "hang":
        await anyio.sleep_forever()
    return {"invoice_id": invoice_id}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def find_invoice(idempotency_key: str) -> dict[str, Any]:
    """The invoice made under this idempotency key, or {"found": false}."""
    for effect in _effects():
        if effect["kind"] == "invoice" and effect.get("key") == idempotency_key:
            return {"invoice_id": effect["invoice_id"]}
    return {"found": False}


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


# Besides tools: a prompt, a completion, a document, a contact template and a private note (the proxy relays
# them; the CRM policy lets reads of `crm://docs/*` through and names nothing else).
@server.prompt()
def follow_up(name: str, tone: str = "warm") -> str:
    """A follow-up email to a lead."""
    return f"Write a {tone} follow-up email to {name}."


@server.completion()
async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
    if argument.name == "tone":
        return Completion(values=[t for t in ("warm", "formal", "brief") if t.startswith(argument.value)])
    return None


@server.resource("crm://docs/terms", mime_type="text/plain")
def terms() -> str:
    """The standard terms sent with every quote."""
    return "Net 30. Prices in EUR."


@server.resource("crm://notes/private", mime_type="text/plain")
def private_note() -> str:
    return "the CEO's phone number"


@server.resource("crm://contacts/{email}")
def contact(email: str) -> dict[str, str]:
    """A contact card."""
    return {"email": email}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
