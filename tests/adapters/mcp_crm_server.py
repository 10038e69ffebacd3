"""A small real MCP server (mcp 2.x `MCPServer`) over stdio: CRM tools that append every effect to a file
(`CRM_EFFECTS`), so a test in another process can count what happened here."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

EFFECTS = Path(os.environ["CRM_EFFECTS"])
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


if __name__ == "__main__":
    server.run("stdio")
