"""`ToolBridge`: one policy tool name, guarded, whose body is the Agents SDK's own execution of the call.

Guard runs a registered function; the Agents SDK runs a `FunctionTool` through `on_invoke_tool(ctx, json)`
(argument parsing and validation, context injection, the function in a worker thread when it is sync). The
bridge joins them: the adapter puts the SDK's execution of *this* call in a context variable, then makes the
guarded call with the call's id and arguments; Guard's body runs whatever is in flight. So classify, brakes,
`offered`, dedupe, the gate, `started`, retries and `completed` / `failed` happen around the SDK's own
execution, and a call Guard refuses or deduplicates never reaches it.

What the ledger records as the result: the tool's return value (a JSON object in a text is recorded as that
object, so a policy's `external_ids` fields can be read from it). An exception from the tool is a failure:
Guard records it and its policy decides (retry, compensate, halt) - never a success with sad prose.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from guard import CompensationKind, Guard, GuardedTool, ReconcileContext, RollbackContext

__all__ = ["CompensationKind", "ToolBridge", "recordable"]



@dataclass(slots=True)
class _InFlight:
    """The SDK's execution of the call being guarded now, and whether it ran (False until it returns)."""

    execute: Callable[[Mapping[str, Any]], Awaitable[Any]]  # the framework's execution with these arguments
    ran: bool = False
    out: Any = None


_IN_FLIGHT: ContextVar[_InFlight | None] = ContextVar("guard_openai_agents_in_flight", default=None)


def recordable(out: Any) -> Any:
    """The JSON value Guard records for a tool's output (a JSON object in a text becomes that object)."""
    if isinstance(out, str) and out.startswith("{"):
        try:
            parsed: Any = json.loads(out)
        except ValueError:
            return out
        return cast(dict[str, Any], parsed) if isinstance(parsed, dict) else out
    model_dump: Any = getattr(out, "model_dump", None)  # a pydantic model returned by the tool
    if callable(model_dump):
        return model_dump(mode="json")
    return out


class ToolBridge:
    """The guarded tool behind one policy tool name, for SDK calls of any tool under that name.

    Declare what undoes or checks the effect here, as on a `GuardedTool`: `.compensation(name=...)`,
    `.reconcile`, `.verify`, `.handoff(role)`. `fallback` runs the tool when no SDK call is in flight (Guard's
    recovery re-running a repeat-safe call in another process); without it such a call fails.

    Failure modes: `acall` raises Guard's typed outcomes (`CallOutcomeError` subclasses, and `ApprovalPending`
    in deferred mode); the tool's own exceptions are recorded by Guard first and reach the caller as
    `CallFailed` (or what the policy's failure rule makes of them).
    """

    def __init__(self, guard: Guard, name: str, *, external_ids: Mapping[str, str] | None = None,
                 fallback: Callable[[Mapping[str, Any]], Any] | None = None) -> None:
        self.guard = guard
        self.name = name
        self.fallback = fallback
        # Two guarded tools under one name: an async body for the SDK's calls (always in its event loop) and a
        # sync one for recovery and sagas (which find tools by name and run outside any loop), registered last.
        self._async = guard.tool(self._abody, name=name, external_ids=external_ids)
        self._sync = guard.tool(self._body, name=name, external_ids=external_ids)

    @property
    def tools(self) -> tuple[GuardedTool, GuardedTool]:
        return (self._sync, self._async)

    def _body(self, **args: Any) -> Any:
        if self.fallback is None:
            raise RuntimeError(f"{self.name}: no Agents SDK call in flight and no fallback tool to run it")
        return recordable(self.fallback(args))

    async def _abody(self, **args: Any) -> Any:
        flight = _IN_FLIGHT.get()
        if flight is None:
            return self._body(**args)
        flight.ran = False
        out = await flight.execute(args)  # the arguments Guard runs: the model's, or a reviewer's edit
        flight.ran, flight.out = True, out
        return recordable(out)

    async def acall(self, args: Mapping[str, Any], call_id: str,
                    execute: Callable[[Mapping[str, Any]], Awaitable[Any]]) -> tuple[bool, Any, Any]:
        """Guard one call whose execution is `execute()`: (whether it ran now, what it returned, the recorded
        result). When it did not run, Guard returned the result the ledger holds for its idempotency key."""
        flight = _InFlight(execute)
        token = _IN_FLIGHT.set(flight)
        try:
            recorded = await self._async.acall_with(args, call_id=call_id)
        finally:
            _IN_FLIGHT.reset(token)
        return flight.ran, flight.out, recorded

    # -- what undoes or checks this tool (forwarded to both guarded tools) ---------------------------------

    def compensation(self, *, name: str, kind: CompensationKind = "undo", external_ids: Mapping[str, str] | None = None,
                     label: str | None = None) -> Callable[[Callable[[RollbackContext], Any]], GuardedTool]:
        """See `GuardedTool.compensation`: a plain function, itself a guarded call under `name`."""
        def wrap(fn: Callable[[RollbackContext], Any]) -> GuardedTool:
            self._async.compensation(name=name, kind=kind, external_ids=external_ids, label=label)(fn)
            return self._sync.compensation(name=name, kind=kind, external_ids=external_ids, label=label)(fn)
        return wrap

    def reconcile(self, fn: Callable[[ReconcileContext], Any]) -> Callable[[ReconcileContext], Any]:
        """See `GuardedTool.reconcile`."""
        for tool in self.tools:
            tool.reconcile(fn)
        return fn

    def verify(self, fn: Callable[[Any, ReconcileContext], bool]) -> Callable[[Any, ReconcileContext], bool]:
        """See `GuardedTool.verify`."""
        for tool in self.tools:
            tool.verify(fn)
        return fn

    def handoff(self, role: str) -> ToolBridge:
        """See `GuardedTool.handoff`."""
        for tool in self.tools:
            tool.handoff(role)
        return self

    def __repr__(self) -> str:
        return f"<ToolBridge {self.name}>"
