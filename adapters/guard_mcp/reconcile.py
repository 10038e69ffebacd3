"""Reconcile checks declared on the proxy's side: `--reconcile create_invoice=find_invoice`.

The upstream server offers a look-up tool that finds the effect of a call by its idempotency key
(`find_invoice` finds the invoice `create_invoice` made under a key); the proxy declares it as that tool's
reconcile check, as an agent builder declares `.reconcile(...)` next to a Python tool. Guard asks it whenever a
call's outcome is unknown (the upstream's response was lost, the upstream died mid-call, the call ran past its
timeout) or a call that is not repeat-safe failed:

- the look-up tool gets Guard's key as `_meta["guard/idempotency_key"]` and, by name, the arguments its input
  schema asks for: `idempotency_key` (the key again), then the looked-up call's own arguments and external ids;
- it answers as the looked-up tool would have (that result becomes the call's: `completed`, the client gets it),
  or with `{"found": false}` in its structured content when it knows of no such call (proven absent: a clean
  failure; except right after an unanswered request, which may still land, so the call stays in doubt);
- an error result, a required argument found nowhere, or no answer at all means "cannot tell": the call stays
  `in_doubt` and its run waits for review (`guard recover` asks again later).

Like a compensation, the look-up talks to the upstream over a connection of its own, on a thread of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import mcp_types as types

from guard import Found, GuardedTool, NotFound, ReconcileContext

from .definitions import args_by_name, unbind
from .meta import IDEMPOTENCY_META_KEY
from .ownloop import on_own_loop
from .upstream import Upstream, connect, list_all_tools

__all__ = ["declare_reconcile", "lookup_args"]

KEY_ARGUMENT = "idempotency_key"


def lookup_args(schema: Mapping[str, Any], ctx: ReconcileContext) -> dict[str, Any] | None:
    """The look-up tool's arguments, by name (None when a required one is found nowhere)."""
    sources: list[Mapping[str, Any]] = [
        {KEY_ARGUMENT: ctx.idempotency_key} if ctx.idempotency_key else {},
        unbind(ctx.args),
        dict(ctx.external_ids),
    ]
    args, missing = args_by_name(schema, sources)
    return None if missing else args


def declare_reconcile(tool: GuardedTool, lookup_tool: str, upstream: Upstream) -> GuardedTool:
    """Declare the upstream tool `lookup_tool` as the reconcile check of `tool` (a proxy's guarded tool)."""

    def check(ctx: ReconcileContext) -> Found | NotFound | None:
        return on_own_loop(lambda: _look_up(upstream, lookup_tool, ctx))

    tool.reconcile(check)
    return tool


async def _look_up(upstream: Upstream, name: str, ctx: ReconcileContext) -> Found | NotFound | None:
    async with connect(upstream) as session:
        listed = {t.name: t for t in await list_all_tools(session)}
        if name not in listed:
            return None
        args = lookup_args(listed[name].input_schema, ctx)
        if args is None:
            return None
        params = types.CallToolRequestParams(
            name=name,
            arguments=args,
            _meta={IDEMPOTENCY_META_KEY: ctx.idempotency_key} if ctx.idempotency_key else None,
        )
        result = await session.send_request(types.CallToolRequest(params=params), types.CallToolResult)
    if result.is_error:
        return None
    structured: Any = result.structured_content
    if isinstance(structured, Mapping) and cast(Mapping[str, Any], structured).get("found") is False:
        return NotFound()
    return Found(result=result.model_dump(mode="json", by_alias=True, exclude_none=True))
