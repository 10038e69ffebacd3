"""The saga: when a run fails, compensate its earlier calls in reverse order, each as a guarded call.

Each compensation is offered under its own tool name (classified by the policy, recorded, retried or gated
like any call), with the idempotency key `compensate:<call id>`, so running the saga again (after a crash,
or by an operator) never compensates twice. A compensation that fails marks its call `rollback_failed` and
stops the saga: the run halts in `pending_review` listing what was undone and what remains. Nothing loops,
nothing is dropped.

The saga runs each compensation through the `RunCall` it is given (the driver's `invoke_in`): it never reaches
back into `Guard` or the driver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from guard.crash import crash_point
from guard.errors import ApprovalPending, ApprovalTimeout, GuardError
from guard.ledger import CallPathLedger, CallRecord, CallState, RunClose, RunState
from guard.policy import PolicySet, SideEffectClass
from guard.runtime.callpath import CallPath
from guard.runtime.context import RunScope
from guard.runtime.hooks import RollbackContext, ToolSpec
from guard.runtime.labels import situation

__all__ = ["Remaining", "RunCall", "SagaOutcome", "Stays", "compensate_run", "failure_of", "rollback_context"]


class RunCall(Protocol):
    """Run one guarded call in an explicit run, to its recorded end (the driver's `invoke_in`)."""

    def __call__(
        self,
        run: RunScope,
        spec: ToolSpec,
        args: Mapping[str, Any],
        /,
        *,
        key: str | None = None,
        call_id: str | None = None,
        compensates: str | None = None,
    ) -> Any: ...


C = CallState
# A call whose effect may stand and that a saga must consider, newest first.
_ELIGIBLE = (C.COMPLETED, C.IN_DOUBT, C.ROLLING_BACK, C.ROLLBACK_FAILED)


class Stays(StrEnum):
    """Why an effect of the run still stands after the saga."""

    NO_COMPENSATION = "no compensation declared"  # a person settles it
    HANDED_OFF = "handed off"  # to the role the tool names; a person settles it
    CHANGED = "changed while the saga ran"  # look again: another worker or operator moved it
    WAITS_FOR_APPROVAL = "its compensation waits for approval"
    COMPENSATION_FAILED = "its compensation failed"

    @property
    def retryable(self) -> bool:
        """True when another pass of the saga may undo it (`guard runs compensate`); else only a person can."""
        return self not in (Stays.NO_COMPENSATION, Stays.HANDED_OFF)


@dataclass(frozen=True, slots=True)
class Remaining:
    """An effect that still stands: the call (described), its state, why, and what that reason names (the
    compensation that waits or failed, its error, the role it was handed off to)."""

    call: str
    state: str
    why: Stays
    compensation: str = ""
    error: str = ""
    handed_to: str = ""

    def __str__(self) -> str:
        match self.why:
            case Stays.NO_COMPENSATION:
                return f"{self.call}: {self.state}, no compensation declared"
            case Stays.HANDED_OFF:
                return f"{self.call}: {self.state}, handed off to {self.handed_to}"
            case Stays.CHANGED:
                return f"{self.call}: changed while the saga ran; look again"
            case Stays.WAITS_FOR_APPROVAL:
                return f"{self.call}: its compensation {self.compensation} waits for approval"
            case Stays.COMPENSATION_FAILED:
                return f"{self.call}: compensation {self.compensation} failed ({self.error})"


@dataclass(slots=True)
class SagaOutcome:
    """What the saga did: calls undone, effects that remain (and why), and the run's new state."""

    undone: list[str] = field(default_factory=list[str])
    remains: list[Remaining] = field(default_factory=list[Remaining])
    close: RunClose | None = None


def failure_of(call: CallRecord | None) -> str | None:
    """The failure a saga compensates for, as the ledger records it on the call that failed (None: no such
    call). One wording for the first pass, recovery's and an operator's, read from the call, never from prose."""
    if call is None:
        return None
    return f"{call.tool} failed: {call.error or call.state}"


def _describe(call: CallRecord) -> str:
    ids = ", ".join(f"{k} {v}" for k, v in call.external_id_map.items())
    return f"#{call.seq} {call.tool}" + (f" ({ids})" if ids else "")


def rollback_context(
    call: CallRecord, *, ledger: CallPathLedger, policies: PolicySet, failure: str, kind: str, state: str
) -> RollbackContext:
    """What the compensation (or an incident's repair) of `call` is given: the same for the same record every time,
    so its arguments, and the key they make, never change. A reviewer's edit is what ran, so it is what is undone."""
    args = json.loads(ledger.args_run_with(call))
    decision = policies.classify(call.team, call.tool, args)
    return RollbackContext(
        run_id=call.run_id,
        call_id=call.call_id,
        tool=call.tool,
        args=args,
        result=call.result,
        external_ids=call.external_id_map,
        idempotency_key=call.offered_key,
        state=state,
        attempts=call.attempts,
        retry_attempts=decision.retry.attempts,
        timeout=decision.retry.timeout,
        failure=failure,
        kind=kind,
    )


def compensate_run(
    path: CallPath,
    invoke: RunCall,
    run_id: str,
    *,
    failure: str,
    failed_tool: str,
    actor: str,
    outcome: str = "failed",
    failed_call_id: str | None = None,
) -> SagaOutcome:
    """Run the compensations of `run_id`'s standing calls, newest first; move the run to its end state."""
    ledger = path.ledger
    run = ledger.get_run(run_id)
    if run is None:
        raise GuardError(f"no run {run_id} in the ledger", run_id=run_id)
    if run.state != RunState.ROLLING_BACK:
        ledger.move_run(
            run_id, RunClose(RunState.ROLLING_BACK, status_label=run.status_label, error_summary=failure), actor=actor
        )
    scope = RunScope(run_id, run.team, actor)
    out = SagaOutcome()
    calls = ledger.calls_of(run_id)
    # A saga run again (recovery, an operator) keeps the name the first one gave the situation.
    label = run.status_label or situation(calls, failed_tool, path.label_of, outcome, failed_call_id)
    for call in reversed(
        [
            c
            for c in calls
            if c.state in _ELIGIBLE
            and c.compensates_call_id is None
            and c.side_effect not in (None, SideEffectClass.READ)
        ]
    ):
        if not _compensate_one(path, invoke, scope, call, failure, out):
            break
    # What is undone is what the ledger says is rolled back, whichever pass of the saga did it.
    out.undone = [
        _describe(c) for c in ledger.calls_of(run_id) if c.state == C.ROLLED_BACK and c.compensates_call_id is None
    ]
    out.close = _close(label, failure, out)
    ledger.move_run(run_id, out.close, actor=actor)
    path.log.warning(
        "run " + out.close.state,
        run_id=run_id,
        status_label=label,
        undone=out.undone,
        remains=[str(r) for r in out.remains],
    )
    return out


def _compensate_one(
    path: CallPath, invoke: RunCall, scope: RunScope, call: CallRecord, failure: str, out: SagaOutcome
) -> bool:
    """Compensate one call; False stops the saga (a compensation failed or waits for a human)."""
    hooks = path.hooks_of(call.tool)
    if hooks is None or hooks.compensation is None:
        handed = hooks is not None and bool(hooks.handoff_role)
        out.remains.append(
            Remaining(
                _describe(call),
                call.state,
                Stays.HANDED_OFF if handed else Stays.NO_COMPENSATION,
                handed_to=hooks.handoff_role or "" if hooks is not None else "",
            )
        )
        return True
    if call.state != C.ROLLING_BACK and not path.ledger.begin_rollback(call, actor=scope.actor, reason=failure):
        out.remains.append(Remaining(_describe(call), call.state, Stays.CHANGED))
        return False
    crash_point("before_compensation")
    ctx = rollback_context(
        call,
        ledger=path.ledger,
        policies=path.policies,
        failure=failure,
        kind=hooks.compensation_kind,
        state=call.state,
    )
    comp = hooks.compensation
    try:
        invoke(scope, comp, {"context": ctx.to_json()}, key=f"compensate:{call.call_id}", compensates=call.call_id)
    except (ApprovalPending, ApprovalTimeout):
        out.remains.append(Remaining(_describe(call), C.ROLLING_BACK, Stays.WAITS_FOR_APPROVAL, compensation=comp.name))
        return False
    except GuardError as exc:  # the compensation failed, was denied or rejected: recorded on its own call
        crash_point("after_compensation")
        path.ledger.end_rollback(
            call, ok=False, actor=scope.actor, detail={"compensation": comp.name, "error": str(exc)}
        )
        out.remains.append(
            Remaining(
                _describe(call), C.ROLLBACK_FAILED, Stays.COMPENSATION_FAILED, compensation=comp.name, error=str(exc)
            )
        )
        return False
    crash_point("after_compensation")
    path.ledger.end_rollback(
        call, ok=True, actor=scope.actor, detail={"compensation": comp.name, "kind": hooks.compensation_kind}
    )
    return True


def _close(label: str, failure: str, out: SagaOutcome) -> RunClose:
    undone = "; ".join(out.undone) or "nothing"
    # Only what has a compensation is worth another pass; the rest needs a person.
    stuck = [r for r in out.remains if r.why.retryable]
    if not out.remains:
        return RunClose(
            RunState.ROLLED_BACK,
            status_label=label,
            error_summary=f"{failure}. Undone: {undone}.",
            next_safe_action="nothing of this run stands in other systems; handle the event anew "
            "when its cause is fixed",
            requires_review=True,
        )
    return RunClose(
        RunState.PENDING_REVIEW,
        status_label=label,
        error_summary=f"{failure}. Undone: {undone}. Remains: {'; '.join(map(str, out.remains))}.",
        next_safe_action=(
            "retry what failed to compensate with `guard runs compensate`, or finish by hand with "
            "`guard runs finish --note`"
            if stuck
            else "what remains has no compensation: settle it by hand, then `guard runs finish --note`"
        ),
        requires_review=True,
    )
