"""`ToolBridge`: one policy tool name, guarded, whose body is LangChain's own execution of the call.

Guard runs a registered function; LangChain runs a tool through its `ToolNode` (argument validation, injected
state, callbacks, inner middleware). The bridge joins them: the adapter puts LangChain's execution of *this*
call in a context variable, then makes the guarded call with the tool call's id and arguments; Guard's body
runs whatever is in flight. So classify, brakes, `offered`, dedupe, the gate, `started`, retries and
`completed` / `failed` all happen around the framework's own execution, and a call Guard refuses or
deduplicates never reaches it.

What the ledger records as the result: the tool message's content (a JSON object in a text content is
recorded as that object, so a policy's `external_ids` fields can be read from it). A deduplicated call gets a
tool message rebuilt from that record. A tool message with `status="error"` is a failure (`ToolReportedError`):
Guard records it as one and its policy decides (retry, compensate, halt) - never a success with sad prose.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import ToolMessage
from langgraph.types import Command

from guard import CallOutcomeError, CompensationKind, Guard, GuardedTool, ReconcileContext, RollbackContext

__all__ = ["ToolBridge", "ToolReportedError", "as_tool_message", "refusal_message"]


class ToolReportedError(Exception):
    """The tool answered with an error tool message (`status="error"`): recorded by Guard as a failure."""


@dataclass(slots=True)
class _InFlight:
    """LangChain's execution of the call being guarded now, and what it produced (None until it succeeds)."""

    execute: Callable[[Mapping[str, Any]], Any]  # LangChain's execution with these arguments
    out: ToolMessage | Command[Any] | None = None



_IN_FLIGHT: ContextVar[_InFlight | None] = ContextVar("guard_langchain_in_flight", default=None)


def _record(out: Any) -> Any:
    """The JSON value Guard records for a framework output."""
    if isinstance(out, Command):
        return {"command": "state update"}  # a LangGraph Command updates the graph; only that it did is recorded
    content: Any = out.content if isinstance(out, ToolMessage) else out
    if isinstance(content, str) and content.startswith("{"):
        try:
            parsed: Any = json.loads(content)
        except ValueError:
            return content
        return cast(dict[str, Any], parsed) if isinstance(parsed, dict) else content
    return content


def _content(recorded: Any) -> str | list[str | dict[str, Any]]:
    if isinstance(recorded, str):
        return recorded
    if isinstance(recorded, list):
        return recorded  # pyright: ignore[reportUnknownVariableType]  # content blocks, recorded as they came
    return json.dumps(recorded, ensure_ascii=False)


def _check(out: Any) -> Any:
    if isinstance(out, ToolMessage) and out.status == "error":
        raise ToolReportedError(out.text)
    return out


class ToolBridge:
    """The guarded tool behind one policy tool name, for LangChain calls of any tool under that name.

    Declare what undoes or checks the effect here, as on a `GuardedTool`: `.compensation(name=...)`,
    `.reconcile`, `.verify`, `.handoff(role)`. `fallback` runs the tool when no LangChain call is in flight
    (Guard's recovery re-running a repeat-safe call in another process); without it such a call fails.

    Failure modes: `call` / `acall` raise Guard's typed outcomes (`CallOutcomeError` subclasses, and
    `ApprovalPending` in deferred mode); the framework's own exceptions propagate after Guard recorded them.
    """

    def __init__(self, guard: Guard, name: str, *, external_ids: Mapping[str, str] | None = None,
                 fallback: Callable[[Mapping[str, Any]], Any] | None = None) -> None:
        self.guard = guard
        self.name = name
        self.fallback = fallback
        # Two guarded tools under one name: a sync body for `invoke`, an async one for `ainvoke`. The sync one
        # is registered last, so recovery and sagas (which find tools by name) get the one they can run.
        self._async = guard.tool(self._abody, name=name, external_ids=external_ids)
        self._sync = guard.tool(self._body, name=name, external_ids=external_ids)

    @property
    def tools(self) -> tuple[GuardedTool, GuardedTool]:
        return (self._sync, self._async)

    # -- the guarded bodies ------------------------------------------------------------------------------

    def _body(self, **args: Any) -> Any:
        flight = _IN_FLIGHT.get()
        if flight is None:
            if self.fallback is None:
                raise RuntimeError(f"{self.name}: no LangChain call in flight and no fallback tool to run it")
            return _record(_check(self.fallback(args)))
        flight.out = None
        out = _check(flight.execute(args))
        flight.out = out
        return _record(out)

    async def _abody(self, **args: Any) -> Any:
        flight = _IN_FLIGHT.get()
        if flight is None:
            return self._body(**args)
        flight.out = None
        out = _check(await flight.execute(args))
        flight.out = out
        return _record(out)

    # -- calls ---------------------------------------------------------------------------------------------

    def call(self, args: Mapping[str, Any], call_id: str | None,
             execute: Callable[[Mapping[str, Any]], ToolMessage | Command[Any]],
             ) -> tuple[ToolMessage | Command[Any] | None, Any]:
        """Guard one call whose execution is `execute(args)`: (what LangChain produced, or None when Guard
        returned a recorded result without running it; the recorded result). `execute` gets the arguments Guard
        runs: the model's, or a reviewer's edit of them."""
        flight = _InFlight(execute)
        token = _IN_FLIGHT.set(flight)
        try:
            recorded = self._sync.call_with(args, call_id=call_id)
        finally:
            _IN_FLIGHT.reset(token)
        return flight.out, recorded

    async def acall(self, args: Mapping[str, Any], call_id: str | None,
                    execute: Callable[[Mapping[str, Any]], Awaitable[ToolMessage | Command[Any]]],
                    ) -> tuple[ToolMessage | Command[Any] | None, Any]:
        """`call` in the event loop, with LangChain's async execution."""
        flight = _InFlight(execute)
        token = _IN_FLIGHT.set(flight)
        try:
            recorded = await self._async.acall_with(args, call_id=call_id)
        finally:
            _IN_FLIGHT.reset(token)
        return flight.out, recorded

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


def as_tool_message(out: ToolMessage | Command[Any] | None, recorded: Any, *, tool_call_id: str,
                    name: str) -> ToolMessage | Command[Any]:
    """What the agent gets: LangChain's own output when the tool ran now, else one rebuilt from the record."""
    if out is not None:
        return out
    return ToolMessage(content=_content(recorded), tool_call_id=tool_call_id, name=name,
                       artifact={"guard": {"deduplicated": True}})


def refusal_message(err: CallOutcomeError, *, tool_call_id: str, name: str) -> ToolMessage:
    """A refused or failed call as LangChain's error tool message; the typed outcome rides in the artifact."""
    return ToolMessage(
        content=f"[guard] {err.message}",
        tool_call_id=tool_call_id,
        name=name,
        status="error",
        artifact={"guard": {"outcome": type(err).__name__, "state": err.state, "run_id": err.run_id,
                            "call_id": err.call_id, "tool": err.tool}},
    )
