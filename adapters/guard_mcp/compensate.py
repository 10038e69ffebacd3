"""Compensations declared on the proxy's side: `--compensate create_invoice=void_invoice`.

The upstream server offers the tool that undoes another (`void_invoice` undoes `create_invoice`); the proxy
declares it as that tool's compensation, as an agent builder declares `.compensation(...)` next to a Python
tool. When a later call of the run fails and the policy says `compensate`, Guard's saga calls it as a guarded
call of its own (the policy classifies `void_invoice`; its key is `compensate:<call id>`, sent upstream as
`_meta["guard/idempotency_key"]`).

Its arguments are taken by name from what the compensated call had: the fields of its structured result
(`invoice_id` of a created invoice), then its own arguments, keeping those the compensating tool's input
schema names. A required argument found nowhere fails the compensation, and the run halts for review.

Guard runs a saga synchronously (it also runs in recovery and operator commands, outside any event loop), so
the compensation talks to the upstream server over a connection of its own, on a thread of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from guard import GuardedTool, RollbackContext, current_call

from .definitions import args_by_name, unbind
from .meta import IDEMPOTENCY_META_KEY
from .ownloop import on_own_loop
from .upstream import Upstream, connect, list_all_tools

__all__ = ["compensation_args", "declare_compensation", "parse_compensation", "parse_pair"]


class CompensationError(Exception):
    """The compensating tool could not be called as declared, or answered `isError`."""


def parse_pair(text: str, flag: str = "--compensate", second: str = "COMPENSATING_TOOL") -> tuple[str, str]:
    """`create_invoice=void_invoice` -> ("create_invoice", "void_invoice")."""
    tool, sep, other = text.partition("=")
    if not sep or not tool.strip() or not other.strip():
        raise ValueError(f"{flag} takes TOOL={second}, not {text!r}")
    return tool.strip(), other.strip()


def parse_compensation(text: str) -> tuple[str, str]:
    """`create_invoice=void_invoice` -> ("create_invoice", "void_invoice")."""
    return parse_pair(text)


def compensation_args(schema: Mapping[str, Any], ctx: RollbackContext) -> dict[str, Any]:
    """The compensating tool's arguments, by name, from the compensated call's structured result and arguments."""
    raw: Any = ctx.result
    result: Mapping[str, Any] = cast(Mapping[str, Any], raw) if isinstance(raw, Mapping) else {}
    structured = result.get("structuredContent")
    sources: list[Mapping[str, Any]] = [
        cast(Mapping[str, Any], structured) if isinstance(structured, Mapping) else {},
        dict(ctx.external_ids),
        unbind(ctx.args),
    ]
    args, missing = args_by_name(schema, sources)
    if missing:
        raise CompensationError(
            f"no value for {', '.join(missing)} in the result or arguments of {ctx.tool} call {ctx.call_id}"
        )
    return args


def declare_compensation(tool: GuardedTool, compensating_tool: str, upstream: Upstream) -> GuardedTool:
    """Declare the upstream tool `compensating_tool` as the compensation of `tool` (a proxy's guarded tool)."""

    def compensate(ctx: RollbackContext) -> Any:
        call = current_call()
        key = call.idempotency_key if call is not None else None
        return on_own_loop(lambda: _call_upstream(upstream, compensating_tool, ctx, key))

    compensate.__name__ = compensating_tool
    return tool.compensation(name=compensating_tool)(compensate)


async def _call_upstream(upstream: Upstream, name: str, ctx: RollbackContext, key: str | None) -> Any:
    async with connect(upstream) as session:
        listed = {t.name: t for t in await list_all_tools(session)}
        if name not in listed:
            raise CompensationError(f"the upstream server lists no tool {name!r} to compensate {ctx.tool}")
        args = compensation_args(listed[name].input_schema, ctx)
        result = await session.call_tool(name, args, meta={IDEMPOTENCY_META_KEY: key} if key else None)
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise CompensationError(f"{name} answered isError: {text}")
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)
