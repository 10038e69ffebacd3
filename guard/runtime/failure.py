"""What a failed call means, decided once for both drivers: reconcile, retry once, compensate, or halt.

1. Reconcile first: a tool that is not repeat-safe (or whose outcome is unknown) and declares a reconcile
   check is looked up in the other system. Found -> the call is `completed` with what was found (the
   caller gets the result); NotFound -> a clean failure, proven; no answer -> the outcome stays unknown.
2. An unknown outcome of anything but a read is `in_doubt`: never re-run blindly. The run halts for review,
   or compensates when the policy says so (the in-doubt call's own compensation reconciles by its key).
3. A clean failure follows the policy's `on_failure`: `retry` (once, only when provably safe), `continue`,
   `halt` (pending review), or `compensate`.
A compensation that fails never starts a saga of its own: the saga that ran it decides.

`settle` records what the failure means and returns the decision as a typed value (`Completed`, `Retry`,
`Compensate`, `Stop`); the driver acts on it (it runs the saga, `saga.py`, on `Compensate`). Nothing here calls
back up the call path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from guard.errors import CallFailed, CallInDoubt, CallOutcomeError, OutcomeUnknown
from guard.ledger import CallState, RunClose, RunState
from guard.policy import OnFailure, SideEffectClass
from guard.runtime import tracing
from guard.runtime.callpath import CallPath
from guard.runtime.context import CallScope
from guard.runtime.execute import AttemptTimeout
from guard.runtime.hooks import Found, NotFound, ReconcileContext
from guard.runtime.labels import situation
from guard.runtime.steps import Prepared, error_text, extract_ids, scrub_ids, stored_result

__all__ = ["Compensate", "Completed", "Retry", "Settlement", "Stop", "failure_outcome", "reconcile", "settle"]


@dataclass(frozen=True, slots=True)
class Completed:
    """A reconcile check found the effect: the call is recorded `completed`, `value` is its result."""

    value: Any


@dataclass(frozen=True, slots=True)
class Retry:
    """Run the tool once more (a clean failure of a repeat-safe call, or one proven absent)."""

    attempts: int  # attempts made so far (the retry's own attempts count on from here)


@dataclass(frozen=True, slots=True)
class Compensate:
    """The call is recorded failed (or in doubt); its run's saga is to run. Then `failure_outcome` is raised."""

    error: str
    doubtful: bool


@dataclass(frozen=True, slots=True)
class Stop:
    """The failure is recorded (the run halted for review, or left running under `continue`): raise `outcome`."""

    outcome: CallOutcomeError


Settlement = Completed | Retry | Compensate | Stop


@tracing.reconcile_check
def reconcile(
    check: Callable[[ReconcileContext], Found | NotFound | None] | None, ctx: ReconcileContext
) -> Found | NotFound | None:
    """Ask the tool's reconcile check; a check that raises or answers anything else means "cannot tell"."""
    if check is None:
        return None
    try:
        answer = check(ctx)
    except Exception:  # noqa: BLE001 (a reconcile check that raises could not tell: unknown)
        return None
    return answer if isinstance(answer, Found | NotFound) else None


def disagreement(recorded: Mapping[str, str], found: Found) -> str | None:
    """The reconcile check found an effect whose ids contradict what the ledger already holds, or None."""
    clashes = [
        f"{kind}: ledger {value}, other system {found.external_ids[kind]}"
        for kind, value in recorded.items()
        if kind in found.external_ids and found.external_ids[kind] != value
    ]
    return "; ".join(clashes) or None


def _ctx(p: Prepared, scope: CallScope, attempts: int) -> ReconcileContext:
    return ReconcileContext(
        run_id=p.request.run_id,
        call_id=p.offer.call_id,
        tool=p.request.tool,
        args=p.input.args,
        idempotency_key=p.request.idempotency_key,
        external_ids=dict(scope.external_ids),
        attempts=attempts,
    )


def settle(
    path: CallPath, p: Prepared, exc: BaseException, scope: CallScope, attempts: int, retried: bool
) -> Settlement:
    """Record what the failure means and return the decision for the driver."""
    error = error_text(p, exc)
    side_effect = p.decision.side_effect
    repeat_safe = side_effect is not None and side_effect.repeat_safe
    unknown = isinstance(exc, AttemptTimeout | OutcomeUnknown) or not isinstance(exc, Exception)
    hooks = p.input.tool.hooks
    answer = reconcile(hooks.reconcile, _ctx(p, scope, attempts)) if (unknown or not repeat_safe) else None
    if isinstance(answer, NotFound) and isinstance(exc, AttemptTimeout | OutcomeUnknown):
        # The timed-out attempt may still be running (a thread cannot be stopped, a cancelled or unanswered
        # request may still land): "not there yet" proves nothing. It stays in doubt until recovery asks again.
        answer = None
    if isinstance(answer, Found) and (clash := disagreement(scope.external_ids, answer)) is not None:
        # The ledger and the other system disagree: a person decides which is right; nothing is repeated.
        return _record(
            path,
            p,
            f"{error}; the reconcile check and the ledger disagree ({clash})",
            scope,
            attempts,
            True,
            False,
            "ledger_disagrees",
        )
    if isinstance(answer, Found):
        ids = {**scope.external_ids, **answer.external_ids, **extract_ids(p.input.tool, answer.result, {})}
        path.ledger.complete(
            p.request.run_id,
            p.offer.call_id,
            token=p.offer.lease_token,
            result_json=stored_result(p, answer.result),
            external_ids=scrub_ids(p, ids),
            attempts=attempts,
            actor=p.request.actor,
            detail={"reconciled": "found", "after": error},
        )
        path.log.warning(
            "call completed: the reconcile check found its effect",
            call_id=p.offer.call_id,
            tool=p.request.tool,
            after=error,
        )
        return Completed(answer.result)
    proven_clean = isinstance(answer, NotFound)
    doubtful = unknown and side_effect is not SideEffectClass.READ and not proven_clean
    on_failure = p.decision.on_failure
    escalation = _escalation(p, exc, attempts)
    if (
        escalation is None
        and not doubtful
        and not retried
        and on_failure is OnFailure.RETRY
        and not unknown
        and (repeat_safe or proven_clean)
    ):
        why = "its reconcile check found no effect" if proven_clean else "it is repeat-safe"
        path.ledger.record_attempt(
            p.request.run_id,
            p.offer.call_id,
            p.offer.lease_token,
            attempts,
            f"{error} (retrying once: {why})",
            p.request.actor,
        )
        path.log.warning(
            "call failed cleanly; retrying it once",
            call_id=p.offer.call_id,
            tool=p.request.tool,
            error=error,
            because=why,
        )
        return Retry(attempts)
    return _record(path, p, error, scope, attempts, doubtful, proven_clean, escalation)


_CREDENTIALS = re.compile(r"auth|credential|unauthori[sz]ed|forbidden|permission", re.IGNORECASE)


def _escalation(p: Prepared, exc: BaseException, attempts: int) -> str | None:
    """Failures no policy rule should handle on its own: a person looks first (straight to review).

    - credentials failed mid-run: nothing retried or compensated with broken credentials;
    - the retry limit ran out after a write: repeating it again, or undoing around it, needs a decision.
    """
    if isinstance(exc, PermissionError) or _CREDENTIALS.search(type(exc).__name__):
        return "credentials_failed"
    retry = p.decision.retry
    if p.decision.side_effect is SideEffectClass.IDEMPOTENT and retry.attempts > 1 and attempts >= retry.attempts:
        return "retries_exhausted"
    return None


def _record(
    path: CallPath,
    p: Prepared,
    error: str,
    scope: CallScope,
    attempts: int,
    doubtful: bool,
    proven_clean: bool,
    escalation: str | None,
) -> Compensate | Stop:
    state = CallState.IN_DOUBT if doubtful else CallState.FAILED
    on_failure = p.decision.on_failure
    is_compensation = p.input.compensates is not None
    saga = on_failure is OnFailure.COMPENSATE and not is_compensation and escalation is None
    close = None if (saga or is_compensation) else _halt(path, p, error, doubtful, proven_clean, escalation)
    path.ledger.fail(
        p.request.run_id,
        p.offer.call_id,
        token=p.offer.lease_token,
        state=state,
        error=error,
        attempts=attempts,
        actor=p.request.actor,
        external_ids=dict(scope.external_ids),
        run=close,
    )
    if saga:
        return Compensate(error, doubtful)
    where = f"; the run is {close.state} ({close.status_label})" if close is not None else ""
    return Stop(failure_outcome(path, p, error, doubtful, where))


def failure_outcome(path: CallPath, p: Prepared, error: str, doubtful: bool, where: str) -> CallOutcomeError:
    """The typed outcome of a recorded failure (`where` says what became of the run), logged."""
    state = CallState.IN_DOUBT if doubtful else CallState.FAILED
    ids = {"run_id": p.request.run_id, "call_id": p.offer.call_id, "tool": p.request.tool, "state": state}
    path.log.error("call " + state, call_id=p.offer.call_id, tool=p.request.tool, error=error)
    if doubtful:
        return CallInDoubt(f"{p.request.tool}: outcome unknown after {error}{where}", error=error, **ids)
    return CallFailed(
        f"{p.request.tool} failed: {error}{where}", error=error, on_failure=p.decision.on_failure.value, **ids
    )


def _halt(
    path: CallPath, p: Prepared, error: str, doubtful: bool, proven_clean: bool, escalation: str | None
) -> RunClose | None:
    """The run's state after a failure that no saga handles; None when the run goes on (`continue`)."""
    on_failure = p.decision.on_failure
    if escalation is not None:
        label = situation(
            path.ledger.calls_of(p.request.run_id), p.request.tool, path.label_of, escalation, p.offer.call_id
        )
        action = (
            "fix the credentials of " + p.request.tool.split(".", 1)[0] + ", then `guard runs retry-call`"
            if escalation == "credentials_failed"
            else f"find out why {p.request.tool} keeps failing before it is repeated again (`guard runs "
            "retry-call`), compensated (`guard runs compensate`) or finished by hand"
        )
        return RunClose(
            RunState.PENDING_REVIEW,
            status_label=label,
            error_summary=f"{p.request.tool}: {error}",
            next_safe_action=action,
            requires_review=True,
        )
    if not doubtful and on_failure is OnFailure.CONTINUE:
        return None
    label = situation(
        path.ledger.calls_of(p.request.run_id),
        p.request.tool,
        path.label_of,
        "in_doubt" if doubtful else "failed",
        p.offer.call_id,
    )
    if doubtful:
        return RunClose(
            RunState.PENDING_REVIEW,
            status_label=label,
            error_summary=f"{p.request.tool} may or may not have happened: {error}",
            next_safe_action=f"check {p.request.tool} in the other system before anything is re-run "
            "(`guard recover` runs its reconcile check)",
            requires_review=True,
        )
    safe = proven_clean or (p.decision.side_effect is not None and p.decision.side_effect.repeat_safe)
    retry = (
        "it provably did nothing: `guard runs retry-call` is safe"
        if safe
        else "do not retry before checking the other system"
    )
    return RunClose(
        RunState.PENDING_REVIEW,
        status_label=label,
        error_summary=f"{p.request.tool} failed: {error}",
        next_safe_action=f"{retry}; or compensate (`guard runs compensate`) or finish by hand "
        "(`guard runs finish --note`)",
        requires_review=True,
    )
