"""The proxy over streamable HTTP: a real MCP client on loopback to `python -m guard_mcp --serve http`, in front
of the real CRM server (started by the proxy over stdio, or listening on streamable HTTP itself)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from guard_mcp import HttpUpstream
from mcp.client.session import ClientSession
from mcp_world import (
    SERVER,
    effects,
    free_port,
    ledger_calls,
    outcome,
    processes,
    proxy_args,
    server_env,
    session,
    write_policy,
)


@pytest.mark.parametrize("upstream_transport", ["stdio", "http"])
def test_a_client_over_streamable_http_is_guarded_like_one_over_stdio(
    tmp_path: Path, ledger_url: str, upstream_transport: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    env = server_env(log)
    with processes(tmp_path) as procs:
        if upstream_transport == "http":
            port = free_port()
            crm = procs.start_http("crm", [str(SERVER), "--http", str(port)], env, port)
            upstream = ["--upstream-url", crm.url]
        else:
            upstream = ["--", sys.executable, str(SERVER)]
        port = free_port()
        proxy = procs.start_http(
            "proxy",
            [*proxy_args(policies, ledger_url, "http-1", "--serve", "http", "--port", str(port)), *upstream],
            env,
            port,
        )

        async def work(client: ClientSession) -> list[Any]:
            listed = await client.list_tools()
            args = {"email": "ann@acme.io", "name": "Ann"}
            return [
                {t.name for t in listed.tools},
                await client.call_tool("upsert_contact", args),
                await client.call_tool("delete_all_leads", {}),
                await client.call_tool("upsert_contact", args),
            ]

        names, first, denied, again = session(proxy, work)
        second_client = session(proxy, lambda c: c.call_tool("upsert_contact", {"email": "ann@acme.io", "name": "Ann"}))
    assert {"upsert_contact", "delete_all_leads", "send_quote"} <= names
    assert isinstance(first, types.CallToolResult) and not first.is_error
    assert first.structured_content == {"contact_id": "c-ann"}
    assert isinstance(denied, types.CallToolResult) and outcome(denied)["outcome"] == "CallDenied"
    assert isinstance(again, types.CallToolResult) and again.structured_content == first.structured_content
    assert second_client.structured_content == first.structured_content  # another HTTP session, the same run
    assert [e["kind"] for e in effects(log)] == ["upsert"]
    assert ledger_calls(policies, ledger_url, "crm:http-1") == [
        ("upsert_contact", "completed"),
        ("delete_all_leads", "denied"),
    ]


def test_the_upstream_server_alone_over_http_runs_every_call(tmp_path: Path) -> None:
    """The control for the test above: without the proxy the same client calls run the effects each time."""
    log = tmp_path / "effects.jsonl"
    with processes(tmp_path) as procs:
        port = free_port()
        crm: HttpUpstream = procs.start_http("crm", [str(SERVER), "--http", str(port)], server_env(log), port)

        async def work(client: ClientSession) -> None:
            for _ in range(2):
                await client.call_tool("upsert_contact", {"email": "ann@acme.io", "name": "Ann"})
            await client.call_tool("delete_all_leads", {})

        session(crm, work)
    assert [e["kind"] for e in effects(log)] == ["upsert", "upsert", "delete_all"]
