"""`ToolGuard`, `GuardedToolset`, `GuardCapability`: every tool call of a Pydantic AI agent, through Guard.

Per tool call (`GuardedToolset.call_tool`, reached after Pydantic AI validated the arguments):

- the run is the current `guard.run(...)` (open it around `agent.run` / `agent.run_sync`); Guard's call id is
  `<run id>/<tool call id>`, since models and test models reuse ids like `call_1` from one run to the next and
  the ledger refuses a call id of another run; the arguments, as JSON, are what the policy classifies;
- Guard runs Pydantic AI's own execution of the call (the wrapped toolset's `call_tool`) inside its guarded
  path; a call the ledger already completed (same idempotency key: same run, tool and arguments) returns its
  recorded result and runs nothing;
- a denial, rejection, expiry, closed run or failure is recorded first, then reaches the model as a tool return
  with `outcome="denied"` or `"failed"` and `[guard] <reason>` (see `answers.py`); the run goes on;
- waiting for approval: with `Guard(approval="block")` the call waits for a reviewer (or `approval_timeout`);
  with `Guard(approval="defer")` it raises Pydantic AI's `ApprovalRequired`, so the run ends with
  `DeferredToolRequests` (give the agent `output_type=[..., DeferredToolRequests]`). Resume with
  `agent.run(message_history=..., deferred_tool_results=...)` inside `guard.run` of the same run: the same call
  id is offered again (no second `offered`), and the tool runs only once the ledger holds an approval. The
  caller's `ToolApproved` decides nothing: while the ledger's approval is pending the run ends with
  `DeferredToolRequests` again, and a rejection reaches the model as a denial with the reviewer's reason. A
  caller's `ToolDenied` (or `False`) is Pydantic AI's own: the tool never runs and the ledger's approval stays
  pending until a reviewer decides or it expires. `ToolApproved(override_args=...)` with other arguments is
  refused (`IdempotencyConflict`): an approval binds the exact arguments.
- a tool declared `requires_approval=True` in Pydantic AI asks its caller first (the framework's gate), and
  only an approved call reaches Guard's own gate. Nothing waits in the ledger then, so the `with guard.run`
  block's clean end completes the Guard run, and a resume in it is refused (`RunNotRunning`, a denied return):
  it fails closed. Declare approvals in the team's policy instead, where a resume works as above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ApprovalRequired
from pydantic_ai.tools import AgentDepsT
from pydantic_ai.toolsets import AbstractToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool
from pydantic_core import to_jsonable_python

from guard import ApprovalPending, CallOutcomeError, FrameworkTools

from .answers import deduplicated, pending, refusal
from .bridge import ToolBridge

__all__ = ["GuardCapability", "GuardedToolset", "ToolGuard"]


class ToolGuard(FrameworkTools[ToolBridge]):
    """The Guard side of an agent's tools: policy names, one `ToolBridge` per policy tool, the team check.

    Args:
        guard: the Guard whose policies and ledger decide.
        team: when set, a tool call in a run of another team is a usage error (a wiring mistake, loud).
        names: Pydantic AI tool name -> policy tool name (default: the same name).
        external_ids: policy tool name -> `{kind: result field}`, as in `guard.tool(external_ids=...)`.

    Declare compensations and reconcile checks on `tool_guard.tool(policy_name)` before the agent runs. Guard
    the agent with `capability()` (every toolset of the agent) or one toolset with `wrap(toolset)`.
    """

    bridge = ToolBridge

    def capability(self) -> GuardCapability[Any]:
        """A capability that guards every (non-output) tool of the agent it is given to, whatever toolset holds it."""
        return GuardCapability(self)

    def wrap(self, toolset: AbstractToolset[AgentDepsT]) -> GuardedToolset[AgentDepsT]:
        """`toolset`, with every call through Guard."""
        return GuardedToolset(toolset, self)

    def _run_call_id(self, ctx: RunContext[Any]) -> str | None:
        """`<run id>/<tool call id>` in the open run (checked against `team`); None outside a run, where Guard's
        call path itself refuses the call with a usage error."""
        run = self.current_run()
        if run is None or ctx.tool_call_id is None:
            return None
        return self.call_id(run.run_id, ctx.tool_call_id)

    async def call(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[Any],
        tool: ToolsetTool[Any],
        inner: AbstractToolset[Any],
    ) -> Any:
        """One tool call of the agent through Guard; `inner.call_tool` is the framework's execution of it."""
        if tool.tool_def.kind == "unapproved" and not ctx.tool_call_approved:
            raise ApprovalRequired  # the framework's own gate comes first; Guard's follows once it is passed
        call_id = self._run_call_id(ctx)
        bridge = self.tool(self.policy_name(name))
        args = to_jsonable_python(tool_args, fallback=repr)
        try:
            answer = await bridge.acall(
                args,
                call_id,
                lambda run: inner.call_tool(name, tool_args if run == args else _validated(tool, run), ctx, tool),
            )
        except ApprovalPending as err:
            raise pending(err) from None
        except CallOutcomeError as err:
            raise refusal(err, ctx, name) from err
        return answer.out if answer.ran else deduplicated(answer.recorded)


def _validated(tool: ToolsetTool[Any], args: Mapping[str, Any]) -> dict[str, Any]:
    """A reviewer's edit of the arguments, validated as the framework validates the model's."""
    validated: Any = tool.args_validator.validate_python(dict(args))
    return cast(dict[str, Any], validated)


@dataclass
class GuardedToolset(WrapperToolset[AgentDepsT]):
    """A toolset whose every call goes through Guard (see the module docstring for what the model sees)."""

    guarding: ToolGuard

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[AgentDepsT], tool: ToolsetTool[AgentDepsT]
    ) -> Any:
        return await self.guarding.call(name, tool_args, ctx, tool, self.wrapped)


@dataclass
class GuardCapability(AbstractCapability[AgentDepsT]):
    """Wraps the agent's assembled toolset (every non-output tool, each run) in a `GuardedToolset`."""

    guarding: ToolGuard

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # holds a live Guard: not spec-serializable

    def get_wrapper_toolset(self, toolset: AbstractToolset[AgentDepsT]) -> AbstractToolset[AgentDepsT] | None:
        return GuardedToolset(toolset, self.guarding)
