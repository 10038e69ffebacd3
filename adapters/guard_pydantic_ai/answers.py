"""How Guard's outcomes reach a Pydantic AI run, each in the framework's own form.

- refused or failed call -> a tool return with `outcome="denied"` (a decision: denied, rejected, expired, closed
  run) or `outcome="failed"` (the tool failed, is in doubt, or the arguments conflict with the record), content
  `[guard] <reason>`, the typed outcome in the part's `metadata["guard"]` (never sent to the model);
- waiting for a reviewer (deferred mode) -> `ApprovalRequired`: the run ends with `DeferredToolRequests`, the
  approval's ids in `DeferredToolRequests.metadata[tool_call_id]["guard"]`;
- a result Guard already recorded -> a `ToolReturn` of that value, `metadata == {"guard": {"deduplicated": True}}`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic_ai import RunContext
from pydantic_ai.exceptions import ApprovalRequired, ToolFailed, ToolFailedError
from pydantic_ai.messages import ToolReturn, ToolReturnPart

from guard import (
    ApprovalExpired,
    ApprovalPending,
    CallDenied,
    CallOutcomeError,
    CallRejected,
    RunNotRunning,
)

__all__ = ["deduplicated", "outcome_of", "pending", "refusal"]

# Decisions (nothing ran, by policy, brake or reviewer) are denials for Pydantic AI; the rest are failures.
_DECISIONS = (CallDenied, CallRejected, ApprovalExpired, RunNotRunning)


def outcome_of(err: CallOutcomeError) -> dict[str, Any]:
    """The typed outcome as plain data: what an application reads from the tool return's metadata."""
    return {
        "outcome": type(err).__name__,
        "state": str(err.state),
        "run_id": err.run_id,
        "call_id": err.call_id,
        "tool": err.tool,
    }


def refusal(err: CallOutcomeError, ctx: RunContext[Any], name: str) -> Exception:
    """The exception that makes Pydantic AI answer the model with a denied or failed tool return."""
    content = f"[guard] {err.message}"
    if ctx.tool_call_id is None:  # pragma: no cover - the agent always names its tool calls
        return ToolFailed(content)
    outcome: Literal["denied", "failed"] = "denied" if isinstance(err, _DECISIONS) else "failed"
    return ToolFailedError(
        ToolReturnPart(
            tool_name=ctx.tool_name or name,
            content=content,
            tool_call_id=ctx.tool_call_id,
            outcome=outcome,
            metadata={"guard": outcome_of(err)},
        )
    )


def pending(err: ApprovalPending) -> ApprovalRequired:
    """Deferred approval: Pydantic AI's own pause, carrying the approval Guard waits on."""
    return ApprovalRequired(
        {
            "guard": {
                "outcome": "ApprovalPending",
                "run_id": err.run_id,
                "call_id": err.call_id,
                "tool": err.tool,
                "approval_id": err.approval_id,
                "expires_at": err.expires_at,
            }
        }
    )


def deduplicated(recorded: Any) -> ToolReturn[Any]:
    """A call whose key already completed: its recorded result, marked as such for the application."""
    return ToolReturn(return_value=recorded, metadata={"guard": {"deduplicated": True}})
