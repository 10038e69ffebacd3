"""`GuardedTools`: the function tools of an Agents SDK agent, each call through Guard's guarded path.

Per tool call (`FunctionTool.on_invoke_tool`, inside `Runner.run` / `run_sync` / `run_streamed`):

- the run is the current `guard.run(...)` (open it around the runner); Guard's call id is
  `<run id>/<the SDK's tool call id>`: a model's ids (`call_1`, ...) are unique in one run only, and the ledger
  refuses a call id reused in another run. The arguments, as the model sent them, are what the policy
  classifies and the ledger records;
- Guard runs the SDK's own execution of the call (the original tool's parsing, validation, context injection);
  a call the ledger already completed (same idempotency key: same run, tool and arguments) returns its
  recorded result and runs nothing;
- a denial, rejection, expiry, closed run or failure is recorded first, then reaches the model as the tool's
  output text `[guard] <reason>`, the SDK's form for a tool error; the typed outcome rides in the output item's
  `custom_data["guard"]` (never sent to the model) and stays in the ledger;
- waiting for approval: with `Guard(approval="block")` the tool call blocks until a reviewer decides (or
  `approval_timeout`). With `Guard(approval="defer")` the tool's `needs_approval` offers an approval-gated call
  to Guard (one `offered`, one approval request) and answers True: the run stops with the SDK's own
  interruption. Resume with the SDK's `RunState`: `apply_ledger_decisions(guard, state)` approves or rejects
  each interruption as the ledger says, then `Runner.run(agent, state)`. The resumed call is offered again
  under the same call id (no second `offered`) and runs only when the ledger holds its approval: an SDK
  `approve()` the ledger does not back answers the model with `[guard] ... waiting for approval`.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

from agents import FunctionTool, FunctionToolCustomDataContext, RunContextWrapper, Tool, function_tool
from agents.tool_context import ToolContext

from guard import (
    ApprovalPending,
    CallOutcomeError,
    CallState,
    FrameworkTools,
    Guard,
    GuardUsageError,
    Verdict,
)

from .bridge import ToolBridge

__all__ = ["GuardedTools", "guard_call_id"]

Invoke = Callable[[ToolContext[Any], str], Awaitable[Any]]


def guard_call_id(run_id: str, tool_call_id: str) -> str:
    """Guard's call id of an SDK tool call in run `run_id` (see `FrameworkTools.call_id`)."""
    return FrameworkTools.call_id(run_id, tool_call_id)


def _refusal(err: CallOutcomeError | ApprovalPending) -> tuple[str, dict[str, Any]]:
    """A refused or failed call as the model reads it, and the typed outcome kept beside the output."""
    outcome: dict[str, Any] = {
        "outcome": type(err).__name__,
        "run_id": err.run_id,
        "call_id": err.call_id,
        "tool": err.tool,
    }
    if isinstance(err, ApprovalPending):
        outcome |= {"state": CallState.AWAITING_APPROVAL.value, "approval_id": err.approval_id}
        return f"[guard] {err.tool} is waiting for approval {err.approval_id}; it has not run", outcome
    return f"[guard] {err.message}", outcome | {"state": err.state}


def _inner(tool: FunctionTool) -> Invoke:
    """The original tool's execution, raising the tool's exceptions instead of answering the model with them.

    A tool made by `function_tool` is made again from its function with `failure_error_function=None` (the
    same schema, parsing and context injection), so Guard sees a failure as one. Any other `FunctionTool` runs
    as it is: an error it turns into a string itself is, to Guard, a successful call.
    """
    try:
        fn: Any = tool.__wrapped__
    except AttributeError:
        return tool.on_invoke_tool
    again = function_tool(
        fn,
        name_override=tool.name,
        description_override=tool.description,
        failure_error_function=None,
        strict_mode=tool.strict_json_schema,
    )
    return again.on_invoke_tool


class GuardedTools(FrameworkTools[ToolBridge]):
    """Guards the function tools it wraps; one instance per agent (or per team's set of tools).

    Args:
        guard: the Guard whose policies and ledger decide.
        team: when set, a tool call in a run of another team is a usage error (a wiring mistake, loud).
        names: SDK tool name -> policy tool name (default: the same name; model-facing names cannot hold dots).
        external_ids: policy tool name -> `{kind: result field}`, as in `guard.tool(external_ids=...)`.

    Declare compensations and reconcile checks on `guarded.tool(policy_name)` before the agent runs.
    """

    bridge = ToolBridge

    def __init__(
        self,
        guard: Guard,
        *,
        team: str | None = None,
        names: Mapping[str, str] | None = None,
        external_ids: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__(guard, team=team, names=names, external_ids=external_ids)
        # The typed outcome of a refused or deduplicated call, until the SDK asks for the output's custom data.
        self._notes: weakref.WeakKeyDictionary[ToolContext[Any], dict[str, Any]] = weakref.WeakKeyDictionary()

    def wrap(self, tools: Iterable[FunctionTool]) -> list[Tool]:
        """Guarded copies of `tools`, for `Agent(tools=...)`: the same names, descriptions and schemas.

        A tool's own `needs_approval` is refused (GuardUsageError): who approves what is the team's policy.
        Its `timeout_seconds` is not carried over: a timeout cancels the call in the middle of Guard's record;
        give the rule a `retry: {timeout: ...}` instead.
        """
        return [self.wrap_one(t) for t in tools]

    def wrap_one(self, tool: FunctionTool) -> FunctionTool:
        if tool.needs_approval is not False:
            raise GuardUsageError(
                f"tool {tool.name} has its own needs_approval: declare the approval in the team's "
                "policy instead (Guard asks the SDK for the pause itself)"
            )
        policy_name = self.policy_name(tool.name)
        bridge = self.tool(policy_name)
        execute = _inner(tool)

        async def on_invoke_tool(ctx: ToolContext[Any], raw: str) -> Any:
            return await self._invoke(bridge, execute, ctx, raw)

        async def needs_approval(ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
            return await self._needs_approval(bridge, execute, tool.name, ctx, params, call_id)

        return FunctionTool(
            name=tool.name,
            description=tool.description,
            params_json_schema=tool.params_json_schema,
            on_invoke_tool=on_invoke_tool,
            strict_json_schema=tool.strict_json_schema,
            is_enabled=tool.is_enabled,
            tool_input_guardrails=tool.tool_input_guardrails,
            tool_output_guardrails=tool.tool_output_guardrails,
            needs_approval=needs_approval if self.guard.approval == "defer" else False,
            custom_data_extractor=self._custom_data,
        )

    # -- the call ------------------------------------------------------------------------------------------

    def _run(self) -> tuple[str, str]:
        """The open run's id and team (checked against `team`)."""
        run = self.current_run()
        if run is None:
            raise GuardUsageError(
                "an Agents SDK tool guarded by Guard was called outside a run: wrap the runner "
                "in `async with guard.run(team):` (or `with`)"
            )
        return run.run_id, run.team

    async def _invoke(self, bridge: ToolBridge, execute: Invoke, ctx: ToolContext[Any], raw: str) -> Any:
        call_id = self.call_id(self._run()[0], ctx.tool_call_id)
        args = _arguments(raw)
        if args is None:  # nothing to classify, hash or run: the model is told, nothing is recorded
            self._notes[ctx] = {"outcome": "InvalidArguments", "call_id": call_id, "tool": bridge.name}
            return f"[guard] {bridge.name}: the arguments are not a JSON object; nothing ran"
        try:
            ran, out, recorded = await bridge.acall(
                args, call_id, lambda run: execute(ctx, raw if run == args else json.dumps(dict(run)))
            )
        except (CallOutcomeError, ApprovalPending) as err:
            text, outcome = _refusal(err)
            self._notes[ctx] = outcome
            return text
        if ran:
            return out
        self._notes[ctx] = {"deduplicated": True, "call_id": call_id}
        return recorded

    async def _needs_approval(
        self,
        bridge: ToolBridge,
        execute: Invoke,
        tool_name: str,
        ctx: RunContextWrapper[Any],
        params: dict[str, Any],
        tool_call_id: str,
    ) -> bool:
        """Deferred mode: True (the SDK pauses the run) while the ledger holds this call awaiting a decision.

        The ledger answers for a call it knows. A new call the policy sends to a reviewer is offered here, so the
        approval request exists when the SDK pauses; any other call is offered when it runs."""
        run_id, team = self._run()
        call_id = self.call_id(run_id, tool_call_id)
        known = self.guard.call_record(call_id)
        if known is not None:
            return known.state == CallState.AWAITING_APPROVAL
        if self.guard.policies.classify(team, bridge.name, params).verdict is not Verdict.APPROVE:
            return False
        raw = json.dumps(params)
        tool_ctx = ToolContext.from_agent_context(ctx, tool_call_id, tool_name=tool_name, tool_arguments=raw)
        try:
            # Runs the tool only when the ledger already approved an earlier call with the same key (a run
            # delivered again before that call ran): then it must run now, once, and the SDK's call below
            # returns its recorded result.
            await bridge.acall(
                params, call_id, lambda run: execute(tool_ctx, raw if run == params else json.dumps(dict(run)))
            )
        except ApprovalPending:
            return True
        except CallOutcomeError:
            return False  # recorded: the SDK's call reads the same outcome and answers the model with it
        return False

    def _custom_data(self, data: FunctionToolCustomDataContext) -> dict[str, Any] | None:
        note = self._notes.pop(data.tool_context, None)
        return None if note is None else {"guard": note}


def _arguments(raw: str) -> dict[str, Any] | None:
    """The model's arguments as a JSON object (empty text is no arguments); None when they are not one."""
    try:
        parsed: Any = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return None
    return cast(dict[str, Any], parsed) if isinstance(parsed, dict) else None
