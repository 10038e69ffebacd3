"""`LedgerDoors`: what a caller of `Guard` may touch of its ledger, one door each, instead of the whole `Ledger`.

Adapters and examples read the records they need (a call, a run, its calls and events, approvals) and act on the
ledger only by what a person or the agent may do: a reviewer's decision goes through `decide`, the same judgement
by the team's policy as the approval service and `guard approvals approve|reject` (`guard.runtime.review`), never
a raw ledger write; an adapter withdraws an approval nobody should act on any more. `Guard` inherits these doors.

`Guard.ledger` is the ledger typed as its read port (`ReadsPort`): pyright strict makes a write through it a type
error. The whole `Ledger` is the runtime's (`_ledger`); Guard's own operator tooling in `guard/` that acts on an
agent's Guard with operator power (incident repairs, drills, an operator's compensate, the service's check that
both share one ledger) takes it with `ledger_of`. Adapters and examples never do (`tests/test_doors_contract.py`).
Tests write through a `Ledger` of their own on the same database (the `ledger` fixture), and take `ledger_of` only
to look into the Guard's own connections (its pool, its LISTEN connection, a commit witness).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from guard.ledger import ApprovalRecord, CallRecord, DecisionResult, EventRecord, Ledger, ReadsPort, RunRecord
from guard.runtime.callpath import CallPath
from guard.runtime.review import review

__all__ = ["LedgerDoors", "ledger_of"]


class LedgerDoors:
    """The doors of a `Guard` onto its ledger (`_ledger`, the runtime's own) and its policies (`path.policies`)."""

    _ledger: Ledger
    path: CallPath

    @property
    def ledger(self) -> ReadsPort:
        """The ledger, to read: runs, calls, events, approvals and their decisions, the audit trail. Nothing is
        written through it (a type error): a caller acts through the doors below, the agent through its tools."""
        return self._ledger

    def call_record(self, call_id: str) -> CallRecord | None:
        """The call as the ledger holds it now, or None."""
        return self._ledger.get_call(call_id)

    def run_record(self, run_id: str) -> RunRecord | None:
        """The run as the ledger holds it now, or None."""
        return self._ledger.get_run(run_id)

    def calls_of(self, run_id: str) -> list[CallRecord]:
        """The run's calls as the ledger holds them now, in the order they were offered."""
        return self._ledger.calls_of(run_id)

    def events_of(self, run_id: str) -> list[EventRecord]:
        """The run's audit trail: every transition of it and its calls, oldest first (who, when, from, to)."""
        return self._ledger.events_of(run_id)

    def approval_of(self, call_id: str) -> ApprovalRecord | None:
        """The approval request of a call (with its decisions so far), or None."""
        return self._ledger.approval_for_call(call_id)

    def approvals(
        self, *, team: str | None = None, state: str | None = "pending", limit: int = 100
    ) -> list[ApprovalRecord]:
        """Approval requests, oldest first: the pending ones by default (`state=None`: every state)."""
        return self._ledger.list_approvals(state=state, team=team, limit=limit)

    def decide(
        self,
        approval_id: str,
        *,
        reviewer: str,
        decision: Literal["approve", "reject"],
        reason: str | None = None,
        shown_args_hash: str | None = None,
        edited_args: Mapping[str, Any] | None = None,
    ) -> DecisionResult:
        """Record `reviewer`'s decision with the roles the team's policy gives them now, as the approval service
        and `guard approvals approve|reject --as` do (`guard.runtime.review.review`): no self-approval, the
        approval's roles and quorum, edited arguments judged by the policy as an agent's call with them would be.
        The name is taken on trust, as with `--as`: this is the power of whoever holds the Guard (a script, a
        test, a demo); people decide through the approval service with their token.

        Raises:
            ApprovalDecisionError: refused; `code` says why (`not_found`, `forbidden`, `self_approval`,
                `already_decided`, ...).
        """
        return review(
            self._ledger,
            self.path.policies,
            approval_id,
            reviewer=reviewer,
            decision=decision,
            reason=reason,
            shown_args_hash=shown_args_hash,
            edited_args=edited_args,
        )

    def withdraw_approval(self, approval_id: str, *, reason: str, actor: str) -> bool:
        """End an approval nobody should act on any more: its call ends `expired` with `reason` and never runs
        (see `Ledger.withdraw`). True if a call was ended."""
        return self._ledger.withdraw(approval_id, reason=reason, actor=actor)


def ledger_of(guard: LedgerDoors) -> Ledger:
    """The whole ledger of `guard`, for Guard's own operator tooling in `guard/` (see the module docstring)."""
    return guard._ledger  # pyright: ignore[reportPrivateUsage]  # the one way to it outside the class, named
