"""`apply_ledger_decisions`: answer an interrupted run's approval items as Guard's ledger decided them.

The SDK pauses a run at a tool call that needs approval (`result.interruptions`) and resumes it from a
`RunState` on which each item was approved or rejected. With Guard the decision is a reviewer's, recorded in
the ledger (web page, REST, CLI, `guard.decide`), bound to the call's exact arguments. This function reads
that record for each interruption and tells the SDK:

- approved in the ledger -> `state.approve(item)`: the resumed run executes the call, and Guard runs it
  because the ledger holds the approval (the SDK's approval alone would not be enough);
- rejected or expired -> `state.reject(item, rejection_message="[guard] <tool> was rejected: <reason>")`:
  the model reads the reviewer's reason as the tool's output, and nothing runs;
- still waiting -> left undecided: resuming the run pauses at the same call again (no second `offered`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents import RunState, ToolApprovalItem

from guard import CallState, Guard, GuardUsageError, current_run

from .tools import guard_call_id

__all__ = ["LedgerDecisions", "apply_ledger_decisions"]


@dataclass(slots=True)
class LedgerDecisions:
    """What `apply_ledger_decisions` did: items approved, rejected (with the text the model reads), pending."""

    approved: list[ToolApprovalItem] = field(default_factory=list[ToolApprovalItem])
    rejected: list[tuple[ToolApprovalItem, str]] = field(default_factory=list[tuple[ToolApprovalItem, str]])
    pending: list[ToolApprovalItem] = field(default_factory=list[ToolApprovalItem])

    @property
    def settled(self) -> bool:
        """Every interruption has its decision: resuming runs or refuses each of them."""
        return not self.pending


_REFUSED = {
    CallState.REJECTED: "was rejected",
    CallState.EXPIRED: "was not approved before its approval expired",
    CallState.DENIED: "was denied",
}


def apply_ledger_decisions(guard: Guard, state: RunState[Any, Any], *, run_id: str | None = None) -> LedgerDecisions:
    """Approve or reject each of `state`'s interruptions as the ledger says; see the module docstring.

    Args:
        guard: the Guard whose ledger holds the decisions.
        state: the interrupted run's state (`result.to_state()`, or `RunState.from_string(...)`).
        run_id: Guard's run (default: the current `guard.run(...)`).

    Raises:
        GuardUsageError: there is no run to read (open `guard.run` first, or pass `run_id`).
    """
    if run_id is None:
        run = current_run()
        if run is None:
            raise GuardUsageError(
                "apply_ledger_decisions needs Guard's run: call it inside `guard.run(...)` or pass run_id="
            )
        run_id = run.run_id
    out = LedgerDecisions()
    for item in state.get_interruptions():
        call = guard.call_record(guard_call_id(run_id, item.call_id or ""))
        if call is None or call.state == CallState.AWAITING_APPROVAL:
            out.pending.append(item)
            continue
        refused = _REFUSED.get(CallState(call.state))
        if refused is None:  # approved, or further along: the resumed call reads its record from the ledger
            state.approve(item)
            out.approved.append(item)
            continue
        message = f"[guard] {call.tool} {refused}" + (f": {call.reason}" if call.reason else "") + "; it did not run"
        state.reject(item, rejection_message=message)
        out.rejected.append((item, message))
    return out
