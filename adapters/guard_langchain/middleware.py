"""`GuardMiddleware`: LangChain 1.x agent middleware that guards every tool call of a `create_agent` agent.

Per tool call (`wrap_tool_call`, and `awrap_tool_call` under `ainvoke`/`astream`):

- the run is the current `guard.run(...)` (open it around `agent.invoke`); the tool call's id is Guard's
  call id, its arguments (as the model sent them) are what the policy classifies and the ledger records;
- Guard runs LangChain's own execution of the call (`handler(request)`) inside its guarded path; a call the
  ledger already completed (same idempotency key: same run, tool and arguments) returns its recorded
  result as a tool message and runs nothing;
- a denial, rejection, expiry, closed run or failure is recorded first, then reaches the model as an error
  `ToolMessage` (`status="error"`) with Guard's reason; the typed outcome is in the message's artifact;
- waiting for approval: with `Guard(approval="block")` the tool call blocks until a reviewer decides (or
  `approval_timeout`); with `Guard(approval="defer")` the middleware pauses the graph with LangGraph's own
  `interrupt()` (the agent needs a checkpointer). Resume with `agent.invoke(Command(resume=...), config)`
  inside `guard.run` of the same run: the middleware is re-entered, offers the same call again (same call id,
  same key: no second `offered`), and runs it once the ledger holds the approval; while it is still pending it
  interrupts again. The decision is read from the ledger, never from the resume value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, interrupt

from guard import ApprovalPending, CallOutcomeError, FrameworkTools, Guard

from .bridge import ToolBridge, as_tool_message, refusal_message

__all__ = ["GuardMiddleware"]

OnPending = Literal["interrupt", "error"]


class GuardMiddleware(FrameworkTools[ToolBridge], AgentMiddleware[AgentState[Any], Any, Any]):
    """Guards every tool call of the agent it is given to.

    Args:
        guard: the Guard whose policies and ledger decide.
        team: when set, a tool call in a run of another team is a usage error (a wiring mistake, loud).
        names: LangChain tool name -> policy tool name (default: the same name).
        external_ids: policy tool name -> `{kind: result field}`, as in `guard.tool(external_ids=...)`.
        on_pending: in deferred mode, `interrupt` pauses the graph (LangGraph `interrupt`); `error` answers
            the model with an error tool message naming the approval.

    Declare compensations and reconcile checks on `middleware.tool(policy_name)` before the agent runs.
    """

    bridge = ToolBridge

    def __init__(
        self,
        guard: Guard,
        *,
        team: str | None = None,
        names: Mapping[str, str] | None = None,
        external_ids: Mapping[str, Mapping[str, str]] | None = None,
        on_pending: OnPending = "interrupt",
    ) -> None:
        super().__init__(guard, team=team, names=names, external_ids=external_ids)
        AgentMiddleware.__init__(self)  # FrameworkTools.__init__ (first in the MRO) does not chain on
        self.on_pending = on_pending

    def tool(self, name: str, *, base: BaseTool | None = None) -> ToolBridge:
        """The bridge for the policy tool `name`; declare its compensation here.

        One bridge per Guard and name: another `GuardMiddleware` (or `guard_tool`) on the same Guard gets the same
        one, so a compensation declared through either holds for both (sagas and recovery find tools by name).
        `base`, the LangChain tool itself, becomes the bridge's fallback if it has none.
        """
        bridge = super().tool(name)
        if base is not None and bridge.fallback is None:

            def fallback(args: Mapping[str, Any]) -> Any:
                return base.invoke(dict(args))

            bridge.fallback = fallback
        return bridge

    def _start(self, request: ToolCallRequest) -> tuple[ToolBridge, str, str]:
        self.current_run()  # the team check
        name = request.tool_call["name"]
        return self.tool(self.policy_name(name), base=request.tool), name, request.tool_call.get("id") or ""

    def _pending(self, err: ApprovalPending, tool_call_id: str, name: str) -> ToolMessage | None:
        """Deferred approval: pause the graph (returns on resume: offer again), or answer with an error."""
        if self.on_pending == "error":
            return ToolMessage(
                content=f"[guard] {err.message}",
                tool_call_id=tool_call_id,
                name=name,
                status="error",
                artifact={"guard": {"outcome": "ApprovalPending", "approval_id": err.approval_id}},
            )
        interrupt(
            {
                "guard": "approval_pending",
                "run_id": err.run_id,
                "call_id": err.call_id,
                "tool": err.tool,
                "approval_id": err.approval_id,
                "expires_at": err.expires_at,
            }
        )
        return None

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        bridge, name, tool_call_id = self._start(request)
        while True:
            try:
                _, out, recorded = bridge.call(
                    request.tool_call["args"], tool_call_id or None, lambda args: handler(_with_args(request, args))
                )
            except ApprovalPending as err:
                if (answer := self._pending(err, tool_call_id, name)) is not None:
                    return answer
                continue
            except CallOutcomeError as err:
                return refusal_message(err, tool_call_id=tool_call_id, name=name)
            return as_tool_message(out, recorded, tool_call_id=tool_call_id, name=name)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        bridge, name, tool_call_id = self._start(request)
        while True:
            try:
                _, out, recorded = await bridge.acall(
                    request.tool_call["args"], tool_call_id or None, lambda args: handler(_with_args(request, args))
                )
            except ApprovalPending as err:
                if (answer := self._pending(err, tool_call_id, name)) is not None:
                    return answer
                continue
            except CallOutcomeError as err:
                return refusal_message(err, tool_call_id=tool_call_id, name=name)
            return as_tool_message(out, recorded, tool_call_id=tool_call_id, name=name)


def _with_args(request: ToolCallRequest, args: Mapping[str, Any]) -> ToolCallRequest:
    """The request with the arguments Guard runs (a reviewer may have edited the model's)."""
    if args == request.tool_call["args"]:
        return request
    return request.override(tool_call={**request.tool_call, "args": dict(args)})
