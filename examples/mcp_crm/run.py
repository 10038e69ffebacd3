"""A real MCP client talking to the Guard MCP proxy in front of a small CRM MCP server, offline: `make example-mcp`
(or `.venv/bin/python examples/mcp_crm/run.py` from the repository root).

The client (the MCP SDK's own `ClientSession` over stdio, as any MCP host would use) starts

    python -m guard_mcp --policies policies --db sqlite:///examples/mcp_crm/state/guard.db --team growth \\
        --event lead-42 -- python examples/mcp_crm/server.py

and acts as a lead-funnel agent on lead 42. The rules are the growth team's (`policies/growth.yaml`): the lookup
and the contact upsert run at once; `crm.delete_lead` (which calls itself read-only) is named by no rule and is
denied; the prospect email waits for a person with the `marketing` role, who approves it with Guard's CLI; the
agent's retry sends it once. Last, the ledger's story of the run (`guard runs show growth:lead-42`).
Everything lives in examples/mcp_crm/state/ (or $MCP_CRM_STATE), wiped at the start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "adapters"), str(ROOT)]  # adapters/ holds import packages; see adapters/README.md

import anyio  # noqa: E402
import mcp_types as types  # noqa: E402
from guard_mcp import OUTCOME_META_KEY, connect  # noqa: E402
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("MCP_CRM_STATE", HERE / "state"))  # the tests point it at a temporary folder
DB = f"sqlite:///{STATE / 'guard.db'}"
RUN_ID = "growth:lead-42"
LEAD = {"email": "ann@acme.io", "segment": "smb", "unsubscribed": False}
EMAIL = {"lead": LEAD, "subject": "Acme x Guard: a proposal"}


class ExampleFailed(Exception):
    """Something the story promises did not happen."""


def section(title: str) -> None:
    print(f"\n== {title}")


def show(label: str, result: types.CallToolResult) -> None:
    body = (
        result.structured_content
        if not result.is_error
        else " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
    )
    print(f"  {label:<34} {'ERROR ' if result.is_error else ''}{json.dumps(body) if not result.is_error else body}")


def check(ok: bool, what: str) -> None:
    if not ok:
        raise ExampleFailed(what)


def guard_cli(*args: str, quiet: bool = False) -> str:
    """Guard's own command line, as the reviewer and the operator run it."""
    print(f"  $ guard {' '.join(args)}")
    done = subprocess.run(
        [sys.executable, "-m", "guard", *args, "--db", DB],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise ExampleFailed(f"guard {' '.join(args)} failed: {done.stdout}{done.stderr}")
    if not quiet:
        print(textwrap.indent(done.stdout.rstrip(), "    "))
    return done.stdout


def proxy() -> StdioServerParameters:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "adapters"), str(ROOT)]),
        "CRM_STATE": str(STATE / "crm.json"),
    }
    return StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "guard_mcp",
            "--policies",
            str(ROOT / "policies"),
            "--db",
            DB,
            "--team",
            "growth",
            "--event",
            "lead-42",
            "--log-level",
            "error",
            "--",
            sys.executable,
            str(HERE / "server.py"),
        ],
        env=env,
        cwd=str(ROOT),
    )


async def agent(client: ClientSession) -> None:
    section("1. The tools the proxy lists: the CRM server's own, with what they say about themselves")
    for tool in (await client.list_tools()).tools:
        hints = tool.annotations.model_dump(exclude_none=True, by_alias=True) if tool.annotations else {}
        print(f"  {tool.name:<20} {hints}")

    section("2. Allowed: a read (rule enrich) and an idempotent write (rule crm-upsert) run at once")
    found = await client.call_tool("enrichment.lookup", {"email": LEAD["email"]})
    show("enrichment.lookup", found)
    contact = await client.call_tool(
        "crm.upsert_contact", {"email": LEAD["email"], "name": "Ann Lee", "company": "Acme"}
    )
    show("crm.upsert_contact", contact)
    check(not found.is_error and not contact.is_error, "the read and the upsert should run")

    section("3. Denied: crm.delete_lead calls itself read-only, but no rule names it (fail closed)")
    denied = await client.call_tool("crm.delete_lead", {"email": LEAD["email"]})
    show("crm.delete_lead", denied)
    check(denied.is_error, "the delete should be denied")

    section("4. Held: a prospect email cannot be unsent; it waits for a person with the marketing role")
    waiting = await client.call_tool("email.send_prospect", EMAIL)
    show("email.send_prospect", waiting)
    pending: dict[str, Any] = (waiting.meta or {}).get(OUTCOME_META_KEY) or {}  # Guard's facts, in `_meta`
    check(pending.get("outcome") == "ApprovalPending", "the email should wait for approval")
    approval_id = str(pending["approval_id"])
    guard_cli("approvals", "show", approval_id)
    guard_cli(
        "approvals",
        "approve",
        approval_id,
        "--as",
        "maria",
        "--reason",
        "copy reviewed",
        "--policies",
        str(ROOT / "policies"),
    )

    section("5. The agent asks again: the email goes out once; asked a third time, nothing new runs")
    sent = await client.call_tool("email.send_prospect", EMAIL)
    show("email.send_prospect", sent)
    again = await client.call_tool("email.send_prospect", EMAIL)
    show("email.send_prospect (again)", again)
    check(not sent.is_error and again.structured_content == sent.structured_content, "one email, one result")


def main() -> None:
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    print("A lead-funnel agent on lead 42, through the Guard MCP proxy (policy: policies/growth.yaml)")

    async def session() -> None:
        with (STATE / "proxy.log").open("w") as log:
            async with connect(proxy(), errlog=log) as client:
                await agent(client)

    anyio.run(session)

    section("6. What the CRM holds (its own file): one contact, one email sent, nothing deleted")
    crm = json.loads((STATE / "crm.json").read_text())
    print(textwrap.indent(json.dumps(crm, indent=2), "  "))
    check(len(crm["emails"]) == 1 and "ann@acme.io" in crm["contacts"], "the CRM should hold one email, one contact")

    section("7. The ledger's story of the run")
    story = guard_cli("runs", "show", RUN_ID)
    check("completed" in story and "denied" in story, "the ledger should tell the whole run")
    print("\nok: allowed calls ran, the delete was denied, the email ran once after its approval.")


if __name__ == "__main__":
    main()
