"""The saga: when a run fails, compensate its earlier calls in reverse order, each as a guarded call.

Each compensation is offered under its own tool name (classified by the policy, recorded, retried or gated
like any call), with the idempotency key `compensate:<call id>`, so running the saga again (after a crash,
or by an operator) never compensates twice. A compensation that fails marks its call `rollback_failed` and
stops the saga: the run halts in `pending_review` listing what was undone and what remains. Nothing loops,
nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from guard.crash import crash_point
from guard.errors import ApprovalPending, ApprovalTimeout, GuardError
from guard.ledger import CallRecord, CallState, RunState
from guard.ledger.moves import RunClose
from guard.policy import SideEffectClass
from guard.runtime.context import RunScope
from guard.runtime.hooks import RollbackContext
from guard.runtime.labels import situation

if TYPE_CHECKING:
    from guard.runtime.guard import Guard

__all__ = ["SagaOutcome", "compensate_run"]

C = CallState
# A call whose effect may stand and that a saga must consider, newest first.
_ELIGIBLE = (C.COMPLETED, C.IN_DOUBT, C.ROLLING_BACK, C.ROLLBACK_FAILED)


@dataclass(slots=True)
class SagaOutcome:
    """What the saga did: calls undone, effects that remain (and why), and the run's new state."""

    undone: list[str] = field(default_factory=list[str])
    remains: list[str] = field(default_factory=list[str])
    close: RunClose | None = None


def _describe(call: CallRecord) -> str:
    ids = ", ".join(f"{k} {v}" for k, v in call.external_id_map.items())
    return f"#{call.seq} {call.tool}" + (f" ({ids})" if ids else "")


def _context(call: CallRecord, failure: str, kind: str, guard: Guard) -> RollbackContext:
    decision = guard.policies.classify(call.team, call.tool, call.args)
    return RollbackContext(
        run_id=call.run_id, call_id=call.call_id, tool=call.tool, args=call.args, result=call.result,
        external_ids=call.external_id_map, idempotency_key=call.offered_key, state=call.state,
        attempts=call.attempts, retry_attempts=decision.retry.attempts, timeout=decision.retry.timeout,
        failure=failure, kind=kind)


def compensate_run(guard: Guard, run_id: str, *, failure: str, failed_tool: str, actor: str,
                   outcome: str = "failed", failed_call_id: str | None = None) -> SagaOutcome:
    """Run the compensations of `run_id`'s standing calls, newest first; move the run to its end state."""
    ledger = guard.ledger
    run = ledger.get_run(run_id)
    if run is None:
        raise GuardError(f"no run {run_id} in the ledger", run_id=run_id)
    if run.state != RunState.ROLLING_BACK:
        ledger.move_run(run_id, RunClose(RunState.ROLLING_BACK, status_label=run.status_label,
                                         error_summary=failure), actor=actor)
    scope = RunScope(run_id, run.team, actor)
    out = SagaOutcome()
    calls = ledger.calls_of(run_id)
    # A saga run again (recovery, an operator) keeps the name the first one gave the situation.
    label = run.status_label or situation(calls, failed_tool, guard.label_of, outcome, failed_call_id)
    for call in reversed([c for c in calls if c.state in _ELIGIBLE and c.compensates_call_id is None
                          and c.side_effect not in (None, SideEffectClass.READ)]):
        if not _compensate_one(guard, scope, call, failure, out):
            break
    # What is undone is what the ledger says is rolled back, whichever pass of the saga did it.
    out.undone = [_describe(c) for c in ledger.calls_of(run_id)
                  if c.state == C.ROLLED_BACK and c.compensates_call_id is None]
    out.close = _close(label, failure, out)
    ledger.move_run(run_id, out.close, actor=actor)
    guard.log.warning("run " + out.close.state, run_id=run_id, status_label=label, undone=out.undone,
                      remains=out.remains)
    return out


def _compensate_one(guard: Guard, scope: RunScope, call: CallRecord, failure: str, out: SagaOutcome) -> bool:
    """Compensate one call; False stops the saga (a compensation failed or waits for a human)."""
    hooks = guard.hooks_of(call.tool)
    if hooks is None or hooks.compensation is None:
        why = (f"handed off to {hooks.handoff_role}" if hooks is not None and hooks.handoff_role
               else "no compensation declared")
        out.remains.append(f"{_describe(call)}: {call.state}, {why}")
        return True
    if call.state != C.ROLLING_BACK and not guard.ledger.begin_rollback(call, actor=scope.actor, reason=failure):
        out.remains.append(f"{_describe(call)}: changed while the saga ran; look again")
        return False
    crash_point("before_compensation")
    ctx = _context(call, failure, hooks.compensation_kind, guard)
    comp = hooks.compensation
    try:
        guard.invoke_in(scope, comp.spec, {"context": ctx.to_json()}, key=f"compensate:{call.call_id}",
                        compensates=call.call_id)
    except (ApprovalPending, ApprovalTimeout):
        out.remains.append(f"{_describe(call)}: its compensation {comp.name} waits for approval")
        return False
    except GuardError as exc:  # the compensation failed, was denied or rejected: recorded on its own call
        crash_point("after_compensation")
        guard.ledger.end_rollback(call, ok=False, actor=scope.actor, detail={"compensation": comp.name,
                                                                              "error": str(exc)})
        out.remains.append(f"{_describe(call)}: compensation {comp.name} failed ({exc})")
        return False
    crash_point("after_compensation")
    guard.ledger.end_rollback(call, ok=True, actor=scope.actor,
                              detail={"compensation": comp.name, "kind": hooks.compensation_kind})
    return True


def _close(label: str, failure: str, out: SagaOutcome) -> RunClose:
    undone = "; ".join(out.undone) or "nothing"
    # Only what has a compensation is worth another pass; the rest needs a person.
    stuck = [r for r in out.remains if "no compensation declared" not in r and "handed off" not in r]
    if not out.remains:
        return RunClose(RunState.ROLLED_BACK, status_label=label,
                        error_summary=f"{failure}. Undone: {undone}.",
                        next_safe_action="nothing of this run stands in other systems; handle the event anew "
                                         "when its cause is fixed", requires_review=True)
    return RunClose(RunState.PENDING_REVIEW, status_label=label,
                    error_summary=f"{failure}. Undone: {undone}. Remains: {'; '.join(out.remains)}.",
                    next_safe_action=(
                        "retry what failed to compensate with `guard runs compensate`, or finish by hand with "
                        "`guard runs finish --note`" if stuck else
                        "what remains has no compensation: settle it by hand, then `guard runs finish --note`"),
                    requires_review=True)
