"""`ToolBridge`: one policy tool name, guarded, whose body is Pydantic AI's own execution of the call.

Guard runs a registered function; Pydantic AI runs a tool through its toolsets (argument validation done,
`RunContext` injected, inner wrappers, an MCP server's round trip). The bridge joins them: the toolset puts the
framework's execution of *this* call in a context variable, then makes the guarded call with the call's id and
arguments; Guard's body awaits whatever is in flight. So classify, brakes, `offered`, dedupe, the gate,
`started`, retries and `completed` / `failed` all happen around the framework's own execution, and a call Guard
refuses or deduplicates never reaches it.

What the ledger records as the result: the tool's return as JSON (a `ToolReturn`'s `return_value`; a model or
dataclass as its JSON form), so a policy's `external_ids` fields can be read from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic_ai.messages import ToolReturn
from pydantic_core import to_jsonable_python

from guard import CompensationKind, Guard, GuardedTool, ReconcileContext, RollbackContext

__all__ = ["Answer", "CompensationKind", "ToolBridge", "recordable"]



@dataclass(slots=True)
class _InFlight:
    """The framework's execution of the call being guarded now, and what it returned (once it ran)."""

    execute: Callable[[Mapping[str, Any]], Awaitable[Any]]  # the framework's execution with these arguments
    out: Any = None
    ran: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """A guarded call's end: `ran` is False when Guard returned a recorded result and ran nothing."""

    ran: bool
    out: Any  # what the framework's execution returned (None when it did not run)
    recorded: Any  # the JSON value in the ledger


_IN_FLIGHT: ContextVar[_InFlight | None] = ContextVar("guard_pydantic_ai_in_flight", default=None)


def recordable(out: Any) -> Any:
    """The JSON value Guard records for a tool's return."""
    if isinstance(out, ToolReturn):
        out = out.return_value  # pyright: ignore[reportUnknownMemberType]  # ToolReturn is generic in its value
    return to_jsonable_python(out, fallback=repr)


class ToolBridge:
    """The guarded tool behind one policy tool name, for Pydantic AI calls of any tool under that name.

    Declare what undoes or checks the effect here, as on a `GuardedTool`: `.compensation(name=...)`,
    `.reconcile`, `.verify`, `.handoff(role)`. `fallback` runs the tool when no Pydantic AI call is in flight
    (Guard's recovery or an operator re-running a call in another process, with the recorded arguments);
    without it such a re-run fails, is recorded as failed, and the policy decides.

    Failure modes: `acall` raises Guard's typed outcomes (`CallOutcomeError` subclasses, and `ApprovalPending`
    in deferred mode); the tool's own exception is the `__cause__` of `CallFailed`.
    """

    def __init__(self, guard: Guard, name: str, *, external_ids: Mapping[str, str] | None = None,
                 fallback: Callable[[Mapping[str, Any]], Any] | None = None) -> None:
        self.guard = guard
        self.name = name
        self.fallback = fallback
        # Two guarded tools under one name: an async body for the agent, a sync one for recovery and operators.
        # The sync one is registered last, so recovery and sagas (which find tools by name) get one they can run.
        self._async = guard.tool(self._abody, name=name, external_ids=external_ids)
        self._sync = guard.tool(self._body, name=name, external_ids=external_ids)

    @classmethod
    def registered(cls, guard: Guard, name: str) -> ToolBridge | None:
        """The bridge already registered in `guard` under `name`, if any."""
        tool = guard.tool_named(name)
        body = getattr(tool, "__wrapped__", None)  # the bridge's bound `_body` (GuardedTool wraps its function)
        owner = getattr(body, "__self__", None)
        return owner if isinstance(owner, ToolBridge) else None

    @property
    def tools(self) -> tuple[GuardedTool, GuardedTool]:
        return (self._sync, self._async)

    def _body(self, **args: Any) -> Any:
        if self.fallback is None:
            raise RuntimeError(f"{self.name}: no Pydantic AI call in flight and no fallback to run it")
        return recordable(self.fallback(args))

    async def _abody(self, **args: Any) -> Any:
        flight = _IN_FLIGHT.get()
        if flight is None:
            return self._body(**args)
        flight.ran = False
        out = await flight.execute(args)  # the arguments Guard runs: the model's, or a reviewer's edit
        flight.out, flight.ran = out, True
        return recordable(out)

    async def acall(self, args: Mapping[str, Any], call_id: str | None,
                    execute: Callable[[Mapping[str, Any]], Awaitable[Any]]) -> Answer:
        """Guard one call whose execution is `await execute()`."""
        flight = _InFlight(execute)
        token = _IN_FLIGHT.set(flight)
        try:
            recorded = await self._async.acall_with(args, call_id=call_id)
        finally:
            _IN_FLIGHT.reset(token)
        return Answer(flight.ran, flight.out if flight.ran else None, recorded)

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
