"""`GuardProxy`: an MCP server that forwards to an upstream MCP server, every `tools/call` guarded by Guard.

One proxy connection is one Guard run (`run_id`, or `<team>:<source_event_id>`; a reconnect with the same
event resumes the run, and every call it already made returns its recorded result). Per `tools/call`:

- the upstream tool's name is the policy tool name, its arguments are what the policy classifies;
- the idempotency key is `_meta["guard/idempotency_key"]` (or `_meta["idempotency_key"]`) when the client
  sends one, else Guard's default (run id + tool + argument hash): a call sent again runs nothing twice;
- an allowed call is forwarded upstream inside Guard's path and its result recorded; an upstream result with
  `isError` is recorded as a failure (the policy decides: retry, compensate, halt);
- a denial, rejection, expiry, failure or pending approval (deferred mode) is answered with an MCP tool
  error result (`isError: true`) whose text is Guard's reason and whose `structuredContent` names the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

from guard import ApprovalPending, CallOutcomeError, Guard, GuardedTool

__all__ = ["IDEMPOTENCY_META_KEYS", "GuardProxy", "ToolReportedError", "serve_stdio"]

IDEMPOTENCY_META_KEYS = ("guard/idempotency_key", "idempotency_key")


class ToolReportedError(Exception):
    """The upstream tool answered with `isError: true`: recorded by Guard as a failure."""


def _error(text: str, outcome: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=f"[guard] {text}")], is_error=True,
                                structured_content={"guard": outcome})


def _meta_key(params: types.CallToolRequestParams) -> str | None:
    meta: Mapping[str, Any] = params.meta or {}
    for name in IDEMPOTENCY_META_KEYS:
        value = meta.get(name)
        if isinstance(value, str) and value:
            return value
    return None


class GuardProxy:
    """Forwards `tools/list` and guards `tools/call` to `upstream` (an initialized client session)."""

    def __init__(self, guard: Guard, upstream: ClientSession, *, name: str = "guard-proxy") -> None:
        self.guard = guard
        self.upstream = upstream
        self._tools: dict[str, GuardedTool] = {}
        self.server: Server[Any] = Server(name, on_list_tools=self._list_tools, on_call_tool=self._call_tool)

    def _guarded(self, name: str) -> GuardedTool:
        tool = self._tools.get(name)
        if tool is None:
            upstream = self.upstream

            async def forward(**args: Any) -> Any:
                result = await upstream.call_tool(name, args)
                if result.is_error:
                    raise ToolReportedError(" ".join(getattr(c, "text", "") for c in result.content) or "isError")
                return result.model_dump(mode="json", by_alias=True, exclude_none=True)

            tool = self.guard.tool(forward, name=name)
            self._tools[name] = tool
        return tool

    async def _list_tools(self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None,
                          ) -> types.ListToolsResult:
        return await self.upstream.list_tools(params=params)

    async def _call_tool(self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams,
                         ) -> types.CallToolResult:
        tool = self._guarded(params.name)
        try:
            recorded = await tool.acall_with(params.arguments or {}, key=_meta_key(params))
        except ApprovalPending as err:
            return _error(err.message, {"outcome": "ApprovalPending", "approval_id": err.approval_id,
                                        "run_id": err.run_id, "call_id": err.call_id})
        except CallOutcomeError as err:
            return _error(err.message, {"outcome": type(err).__name__, "state": err.state, "run_id": err.run_id,
                                        "call_id": err.call_id})
        return types.CallToolResult.model_validate(recorded)


async def serve_stdio(guard: Guard, upstream: StdioServerParameters, *, team: str, run_id: str | None = None,
                      source_event_id: str | None = None) -> None:
    """Start `upstream`, then serve the proxy on this process's stdin/stdout, all in one Guard run."""
    async with AsyncExitStack() as stack:
        read, write = await stack.enter_async_context(stdio_client(upstream))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        proxy = GuardProxy(guard, session)
        async with guard.run(team, run_id=run_id, source_event_id=source_event_id), stdio_server() as (sr, sw):
            await proxy.server.run(sr, sw, proxy.server.create_initialization_options())
