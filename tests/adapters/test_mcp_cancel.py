"""A client that cancels a tool call through the proxy: its `notifications/cancelled` reaches the upstream for
that request and no other, and the ledger says what is known of the call: an effect call the upstream may have
run is `in_doubt`, never `completed` or `failed`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_reference_world import env

from guard import Guard

POLICY = """\
team: billing
rules:
  - {name: charge, tools: [charge], class: compensable}
  - {name: watch, tools: [watch], class: read}
"""
# A real MCP server: `charge` runs until it is cancelled, and then notes its id in $CANCELLED; `watch` answers with
# the ids noted there once there is one (a 2026-era client's requests may each have an upstream process of their
# own, so the two meet in a folder).
UPSTREAM = """
import os
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("slow-billing")
CANCELLED = Path(os.environ["CANCELLED"])


@server.tool()
async def charge(charge_id: str, ctx: Context) -> str:
    await ctx.report_progress(0, 1)  # it runs: the client may cancel it now
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        (CANCELLED / charge_id).touch()
        raise
    return "never"


@server.tool()
async def watch(ctx: Context) -> list[str]:
    await ctx.report_progress(0, 1)
    with anyio.fail_after(30):
        while not any(CANCELLED.iterdir()):
            await anyio.sleep(0.02)  # the stand-in polls its folder; the test waits on this answer
    return sorted(p.name for p in CANCELLED.iterdir())


server.run()
"""


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_a_cancelled_call_is_cancelled_upstream_for_that_request_only_and_left_in_doubt(
    tmp_path: Path, mode: str
) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "billing.yaml").write_text(POLICY)
    upstream = tmp_path / "upstream.py"
    upstream.write_text(UPSTREAM)
    (tmp_path / "cancelled").mkdir()
    db = f"sqlite:///{tmp_path / 'guard.db'}"
    proxy = StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "guard_mcp", "--policies", str(tmp_path / "policies"), "--db", db, "--team", "billing"),
            *("--event", "cancel", "--log-level", "error", "--", sys.executable, str(upstream)),
        ],
        env=env(CANCELLED=str(tmp_path / "cancelled")),
    )

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with Client(proxy, mode=mode) as client:  # pyright: ignore[reportArgumentType] - a ConnectMode literal
            running = {"charge": anyio.Event(), "watch": anyio.Event()}
            doomed = anyio.CancelScope()

            async def call(tool: str, args: dict[str, Any]) -> None:
                async def started(progress: float, total: float | None, message: str | None) -> None:
                    running[tool].set()

                with doomed if tool == "charge" else anyio.CancelScope():
                    out[tool] = await client.call_tool(tool, args, progress_callback=started)

            async with anyio.create_task_group() as group:
                group.start_soon(call, "charge", {"charge_id": "c1"})
                group.start_soon(call, "watch", dict[str, Any]())
                await running["charge"].wait()
                await running["watch"].wait()
                doomed.cancel()  # the SDK client sends notifications/cancelled for the charge's request
        return out

    out = anyio.run(main)
    assert "charge" not in out  # cancelled: no answer
    assert out["watch"].structured_content == {"result": ["c1"]}  # the upstream cancelled the charge, not the watch
    with Guard(policies=tmp_path / "policies", db=db, log_level="error") as guard:
        calls = {c.tool: (c.state, c.error) for c in guard.ledger.calls_of("billing:cancel")}
    assert calls["watch"] == ("completed", None)
    state, error = calls["charge"]
    assert state == "in_doubt" and "cancelled (by the client" in str(error)
