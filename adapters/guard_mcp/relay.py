"""What the proxy relays besides tools: prompts, resources, completion and the log level, and the upstream's
identity (server info and instructions), as the upstream offers them.

Only what the upstream advertises is served, so the proxy's capabilities are the upstream's. Each request goes
upstream with the client's own parameters (its `_meta` less its connection envelope, `meta.py`) and the answer
comes back unchanged. One thing is judged: `resources/read` is a guarded call of the run under the policy tool
name `resource:<uri>` (a rule `tools: ["resource:crm://docs/*"]`, `class: read` allows those), recorded like
any call; a URI no rule names is denied, and the client gets a JSON-RPC error with Guard's reason. Each read is
a call of its own (a resource may change between reads): it never returns an earlier read's recorded result.

Each request goes to the client's own upstream session (`links.py`), which also carries the upstream's
requests and notifications back to that client. A 2026-era client's `subscriptions/listen` is the upstream's own
listen stream, relayed on an upstream session of its own (`listen.py`), whenever the proxy opens upstream sessions
of its own; `server/discover` announces the change flags the upstream announces in that era (`GuardProxy`).
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from typing import Any, TypeVar

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST

from guard import ApprovalPending, CallOutcomeError, Guard, GuardedTool

from .links import Link, Links
from .listen import Listening
from .meta import OUTCOME_META_KEY, forward_meta

__all__ = ["RESOURCE_TOOL_PREFIX", "Relay", "identity"]

RESOURCE_TOOL_PREFIX = "resource:"


def identity(upstream: ClientSession, fallback: str) -> dict[str, Any]:
    """The lowlevel `Server`'s identity arguments: the upstream's server info and instructions."""
    info = upstream.server_info
    if info is None:
        return {"name": fallback, "instructions": upstream.instructions}
    return {
        "name": info.name,
        "version": info.version,
        "title": info.title,
        "description": info.description,
        "website_url": info.website_url,
        "icons": info.icons,
        "instructions": upstream.instructions,
    }


P = TypeVar("P", bound=types.RequestParams)

# The client's `resources/read` being served and its upstream session (Guard's tool function sees only the URI).
_READING: ContextVar[tuple[types.ReadResourceRequestParams, Link] | None] = ContextVar(
    "guard_mcp_reading", default=None
)
R = TypeVar("R", bound=types.Result)


def _forwarded(params: P | None) -> P | None:
    return None if params is None else params.model_copy(update={"meta": forward_meta(params.meta)})


class Relay:
    """The lowlevel `Server` handlers for what the upstream offers besides tools (`handlers()`)."""

    def __init__(self, guard: Guard, links: Links) -> None:
        self.guard = guard
        self.links = links
        self._reads: dict[str, GuardedTool] = {}

    def handlers(self) -> dict[str, Any]:
        primary = self.links.primary.session
        caps = (primary.server_capabilities if primary is not None else None) or types.ServerCapabilities()
        found: dict[str, Any] = {}
        if caps.prompts is not None:
            found |= {"on_list_prompts": self._list_prompts, "on_get_prompt": self._get_prompt}
        if caps.resources is not None:
            found |= {
                "on_list_resources": self._list_resources,
                "on_read_resource": self._read_resource,
                "on_list_resource_templates": self._list_resource_templates,
            }
            if caps.resources.subscribe:
                found |= {"on_subscribe_resource": self._subscribe, "on_unsubscribe_resource": self._unsubscribe}
        if caps.completions is not None:
            found["on_completion"] = self._complete
        if caps.logging is not None:
            found["on_set_logging_level"] = self._set_level
        if self.links.upstream is not None:  # the upstream's own listen answers, in the 2026-07-28 era
            found["on_subscriptions_listen"] = Listening(self.links)
        found["on_roots_list_changed"] = self._roots_changed
        return found

    async def _send(self, ctx: ServerRequestContext[Any], request: types.ClientRequest, result_type: type[R]) -> R:
        """`request` to the client's own upstream session; the upstream's messages about it go to the client."""
        async with self.links.serving(ctx) as link:
            assert link.session is not None  # `serving` lends only an open link
            with link.awaiting_answer():
                return await link.session.send_request(request, result_type)

    async def _roots_changed(self, ctx: ServerRequestContext[Any], params: types.NotificationParams | None) -> None:
        async with self.links.serving(ctx) as link:
            if link.session is not None:
                await link.session.send_roots_list_changed()  # pyright: ignore[reportDeprecated] - relayed while clients send it

    async def _list_prompts(
        self,
        ctx: ServerRequestContext[Any],
        params: types.PaginatedRequestParams | None,
    ) -> types.ListPromptsResult:
        return await self._send(ctx, types.ListPromptsRequest(params=_forwarded(params)), types.ListPromptsResult)

    async def _get_prompt(
        self,
        ctx: ServerRequestContext[Any],
        params: types.GetPromptRequestParams,
    ) -> types.GetPromptResult:
        return await self._send(ctx, types.GetPromptRequest(params=_forwarded(params) or params), types.GetPromptResult)

    async def _list_resources(
        self,
        ctx: ServerRequestContext[Any],
        params: types.PaginatedRequestParams | None,
    ) -> types.ListResourcesResult:
        return await self._send(ctx, types.ListResourcesRequest(params=_forwarded(params)), types.ListResourcesResult)

    async def _list_resource_templates(
        self,
        ctx: ServerRequestContext[Any],
        params: types.PaginatedRequestParams | None,
    ) -> types.ListResourceTemplatesResult:
        return await self._send(
            ctx, types.ListResourceTemplatesRequest(params=_forwarded(params)), types.ListResourceTemplatesResult
        )

    async def _subscribe(
        self,
        ctx: ServerRequestContext[Any],
        params: types.SubscribeRequestParams,
    ) -> types.EmptyResult:
        return await self._send(ctx, types.SubscribeRequest(params=_forwarded(params) or params), types.EmptyResult)

    async def _unsubscribe(
        self,
        ctx: ServerRequestContext[Any],
        params: types.UnsubscribeRequestParams,
    ) -> types.EmptyResult:
        return await self._send(ctx, types.UnsubscribeRequest(params=_forwarded(params) or params), types.EmptyResult)

    async def _complete(
        self,
        ctx: ServerRequestContext[Any],
        params: types.CompleteRequestParams,
    ) -> types.CompleteResult:
        return await self._send(ctx, types.CompleteRequest(params=_forwarded(params) or params), types.CompleteResult)

    async def _set_level(
        self,
        ctx: ServerRequestContext[Any],
        params: types.SetLevelRequestParams,
    ) -> types.EmptyResult:
        return await self._send(ctx, types.SetLevelRequest(params=_forwarded(params) or params), types.EmptyResult)

    async def _read_resource(
        self,
        ctx: ServerRequestContext[Any],
        params: types.ReadResourceRequestParams,
    ) -> types.ReadResourceResult:
        name = RESOURCE_TOOL_PREFIX + str(params.uri)
        forwarded = _forwarded(params) or params
        async with self.links.serving(ctx) as link:
            token = _READING.set((forwarded, link))
            try:
                # A key of its own per read: a resource may change, so no read returns an earlier one's result.
                recorded = await self._reader(name).acall_with({"uri": str(params.uri)}, key=f"read:{uuid.uuid4().hex}")
            except ApprovalPending as err:
                raise _refusal(err, {"approval_id": err.approval_id}) from err
            except CallOutcomeError as err:
                raise _refusal(err) from err
            finally:
                _READING.reset(token)
        return types.ReadResourceResult.model_validate(recorded)

    def _reader(self, name: str) -> GuardedTool:
        """The guarded tool that reads one URI upstream (created on first use, one per name)."""
        tool = self._reads.get(name)
        if tool is None:
            primary = self.links.primary

            async def read(uri: str) -> Any:
                params, link = _READING.get() or (types.ReadResourceRequestParams(uri=uri), primary)
                assert link.session is not None
                with link.awaiting_answer():
                    result = await link.session.send_request(
                        types.ReadResourceRequest(params=params), types.ReadResourceResult
                    )
                return result.model_dump(mode="json", by_alias=True, exclude_none=True)

            tool = self._reads[name] = self.guard.tool(read, name=name)
        return tool


def _refusal(err: CallOutcomeError | ApprovalPending, extra: dict[str, Any] | None = None) -> MCPError:
    outcome = {
        "outcome": type(err).__name__,
        "state": getattr(err, "state", "awaiting_approval"),
        "run_id": err.run_id,
        "call_id": err.call_id,
        **(extra or {}),
    }
    return MCPError(code=INVALID_REQUEST, message=f"[guard] {err.message}", data={OUTCOME_META_KEY: outcome})
