"""Where the upstream MCP server is, and one initialized client session to it.

An upstream is either a command the proxy starts and talks to over stdio (`StdioServerParameters`) or the URL
of a server already listening on streamable HTTP (`HttpUpstream`). Both use the SDK's own client transports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TextIO, cast

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from .sdk import send_raw_request

__all__ = [
    "Era",
    "HttpUpstream",
    "Upstream",
    "connect",
    "list_all_tools",
    "list_tools_as_sent",
    "stdio_upstream",
]


@dataclass(frozen=True, slots=True)
class HttpUpstream:
    """An upstream MCP server listening on streamable HTTP, e.g. `http://127.0.0.1:8000/mcp`."""

    url: str


Upstream = StdioServerParameters | HttpUpstream
Era = Literal["handshake", "modern"]  # the 2025 `initialize` handshake, or the 2026-07-28 `server/discover` probe


def stdio_upstream(command: Sequence[str]) -> StdioServerParameters:
    """An upstream started as `command`; it gets this process's environment (the SDK passes only a safe few
    variables by default, and an upstream server usually needs its own configuration from the environment)."""
    return StdioServerParameters(command=command[0], args=list(command[1:]), env=dict(os.environ))


@asynccontextmanager
async def connect(
    upstream: Upstream,
    *,
    errlog: TextIO | None = None,
    session_options: Mapping[str, Any] | None = None,
    era: Era = "handshake",
) -> AsyncGenerator[ClientSession]:
    """An initialized client session to `upstream`, closed (and a started server stopped) on exit.

    `session_options` are the `ClientSession`'s keyword arguments (its callbacks, `link.Link.session_options`).
    `era`: the `handshake` (2025) session every request of the proxy uses, or a `modern` (2026-07-28) one, which
    only a `subscriptions/listen` stream needs (`listen.py`).

    Raises:
        MCPError: a `modern` session to an upstream that does not speak the 2026-07-28 era (its `server/discover`
            answered with an error).
    """
    async with AsyncExitStack() as stack:
        if isinstance(upstream, HttpUpstream):
            read, write = await stack.enter_async_context(streamable_http_client(upstream.url))
        else:
            read, write = await stack.enter_async_context(stdio_client(upstream, errlog=errlog or sys.stderr))
        session = await stack.enter_async_context(ClientSession(read, write, **(session_options or {})))
        if era == "modern":
            await session.discover()
        else:
            await session.initialize()
        yield session


async def list_tools_as_sent(session: ClientSession, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One page of `tools/list` as the upstream sent it, not checked against the SDK's schema of a listing.

    The SDK's client refuses a listing whose tool schemas lack `type: object` (or whose output schema is not an
    object); a client behind the proxy may accept it, so the proxy must not refuse it on the client's behalf.
    """
    return await send_raw_request(session, "tools/list", params)  # the typed `list_tools` validates the listing


async def list_all_tools(session: ClientSession) -> list[types.Tool]:
    """Every tool the server lists, all pages (each tool read as loosely as the SDK's `Tool` model allows)."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        page = await list_tools_as_sent(session, {"cursor": cursor} if cursor else None)
        listed = cast(list[Any], page.get("tools") or [])
        tools.extend(types.Tool.model_validate(tool, by_name=False) for tool in listed)
        cursor = page.get("nextCursor")
        if not isinstance(cursor, str) or not cursor:
            return tools
