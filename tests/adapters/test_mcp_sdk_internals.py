"""The three private internals of the `mcp` SDK the proxy relies on (`guard_mcp/sdk.py`) are still where the
installed SDK keeps them: an SDK upgrade that moves one fails here by name, not somewhere in the proxy. (Ending a
live session through the third is exercised end to end in `test_mcp_idle_sessions.py`.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from guard_mcp import connect
from guard_mcp.sdk import SdkChanged, client_connection, end_http_session, send_raw_request
from mcp import Client
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp_reference_world import reference_stdio
from pydantic import ValidationError


def test_a_lowlevel_request_context_leads_to_the_one_connection_its_client_came_on() -> None:
    seen: list[Connection] = []

    async def ping_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        seen.append(client_connection(ctx))
        return types.CallToolResult(content=[types.TextContent(text="ok")])

    async def tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="ping", input_schema={"type": "object"})])

    server: Server[Any] = Server("internals", on_call_tool=ping_tool, on_list_tools=tools)

    async def main() -> None:
        async with Client(server, mode="legacy") as client:
            await client.call_tool("ping", {})
            await client.call_tool("ping", {})

    anyio.run(main)
    assert len(seen) == 2 and isinstance(seen[0], Connection) and seen[0] is seen[1]


def test_a_raw_request_returns_a_listing_the_sdks_typed_client_refuses(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, Any], BaseException | None]:
        with (tmp_path / "stderr").open("w") as quiet:
            async with connect(reference_stdio(REFERENCE_LAX_SCHEMAS="1"), errlog=quiet) as session:
                raw = await send_raw_request(session, "tools/list")
                try:
                    await session.list_tools()
                except ValidationError as exc:
                    return raw, exc
                return raw, None

    raw, refused = anyio.run(main)
    lax = [tool for tool in raw["tools"] if tool["name"] == "test_lax_schema"]
    assert lax and "type" not in lax[0]["inputSchema"]
    assert refused is not None  # if the SDK stops refusing it, its typed `list_tools` would do


def test_an_sdk_without_the_internal_is_named_in_a_typed_error() -> None:
    class Elsewhere:
        protocol_version = None

    with pytest.raises(SdkChanged, match=r"ClientSession._dispatcher.*written against mcp 2\.3\.0"):
        anyio.run(send_raw_request, Elsewhere(), "tools/list")  # pyright: ignore[reportArgumentType]


def test_the_http_session_manager_keeps_its_sessions_by_id_where_ending_one_looks() -> None:
    """`end_http_session` finds the SDK manager's table of sessions (an unknown ID is simply not there: False), and a
    manager that keeps none where mcp 2.3.0 does is named in a typed error."""
    server: Server[Any] = Server("internals")
    server.streamable_http_app()
    assert end_http_session(server.session_manager, "no-such-session") is False

    with pytest.raises(SdkChanged, match=r"_server_instances.*written against mcp 2\.3\.0"):
        end_http_session(object(), "any")  # pyright: ignore[reportArgumentType]
