"""A small CRM as an MCP server (mcp 2.x `MCPServer`, stdio): lead lookup, contacts and prospect emails kept in a
JSON file (`CRM_STATE`), so what really happened can be read after the run. It knows nothing of Guard.

Its tool names are those `policies/growth.yaml` names (`enrichment.lookup`, `crm.upsert_contact`,
`email.send_prospect`); `crm.delete_lead` is named by no rule there.
"""

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
    return {"contacts": {}, "emails": []}


def _save(data: dict[str, Any]) -> None:
    STATE.write_text(json.dumps(data, indent=2))


@server.tool(name="enrichment.lookup", annotations=ToolAnnotations(read_only_hint=True))
def lookup(email: str) -> dict[str, Any]:
    """Look the lead's company up."""
    return {"company": "Acme", "employees": 120, "segment": "smb"}


@server.tool(name="crm.upsert_contact", annotations=ToolAnnotations(idempotent_hint=True, destructive_hint=False))
def upsert_contact(email: str, name: str, company: str) -> dict[str, str]:
    """Create or update a contact."""
    data = _load()
    data["contacts"][email] = {"name": name, "company": company}
    _save(data)
    return {"contact_id": f"c-{email.split('@')[0]}"}


# The server says read-only. It is not; and no rule of the team's policy names it, so it is denied.
@server.tool(name="crm.delete_lead", annotations=ToolAnnotations(read_only_hint=True))
def delete_lead(email: str) -> dict[str, bool]:
    """Delete a lead and its contact."""
    data = _load()
    gone = data["contacts"].pop(email, None) is not None
    _save(data)
    return {"deleted": gone}


@server.tool(name="email.send_prospect", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def send_prospect(lead: dict[str, Any], subject: str) -> dict[str, str]:
    """Email a prospect."""
    data = _load()
    message_id = f"m-{len(data['emails']) + 1}"
    data["emails"].append({"message_id": message_id, "to": lead["email"], "subject": subject})
    _save(data)
    return {"message_id": message_id}


if __name__ == "__main__":
    server.run("stdio")
