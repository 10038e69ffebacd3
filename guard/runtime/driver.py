"""The two drivers of the guarded call path, sync and async, over the shared steps.

Functions over a `CallPath` (a `GuardedTool` calls `invoke` / `ainvoke` here directly). One call, top to bottom:

1. `_offer`: classify by the team's policy, then the ledger's first commit (brakes, `offered`, dedupe, the
   gate; an auto-approved call is `started` in the same commit);
2. the gate: wait for a decision (`_wait_budget`, `_decided`) and offer again;
3. `_short_circuit` (a recorded result or a refusal) or `_approved` (the arguments the approval binds to);
4. `_drive`: run the tool under its retry rule (`execute.py`); `_completed` records the result;
5. `_failed` settles a failure (`failure.settle` returns the decision) and `_act_on` carries it out: the saga
   (`compensate_run`) runs here, never from inside the failure step.

Only waiting for a decision and running the tool differ between the two drivers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from guard.crash import crash_point
from guard.errors import (
    ApprovalPending,
    ApprovalTimeout,
    CallFailed,
    CallInDoubt,
    CallOutcomeError,
    GuardUsageError,
    LeaseLost,
)
from guard.ledger import CallState, RunClose, RunState
from guard.policy import Verdict
from guard.runtime import saga, tracing
from guard.runtime.callpath import CallPath
from guard.runtime.context import CALL_VAR, RUN_VAR, CallScope, RunScope
from guard.runtime.execute import run_async, run_sync
from guard.runtime.failure import Compensate, Completed, Retry, Stop, failure_outcome, settle
from guard.runtime.hooks import ReconcileContext, ToolSpec
from guard.runtime.leases import gone_process, name_dead_holder
from guard.runtime.review import policies_now, roles_in, still_approved
from guard.runtime.steps import (
    CallInput,
    Prepared,
    as_approved,
    decision_outcome,
    error_text,
    prepare,
    record_success,
)

__all__ = ["ainvoke", "compensate_run", "drive_sync", "invoke", "invoke_in"]


def _scope() -> RunScope:
    run = RUN_VAR.get()
    if run is None:
        raise GuardUsageError(
            "a guarded tool was called outside a run: wrap the agent's work in `with guard.run(team):`"
        )
    return run


@tracing.on_prepared
def _prepare(
    path: CallPath,
    run: RunScope,
    spec: ToolSpec,
    args: Mapping[str, Any],
    key: str | None,
    call_id: str | None,
    compensates: str | None = None,
) -> Prepared:
    crash_point("before_offer")
    decision = path.policies.classify(run.team, spec.name, args)
    try:
        p = prepare(
            path.ledger,
            decision,
            CallInput(run, spec, args, key, call_id, compensates),
            path.worker_id,
            path.lease_ttl,
            path.arguments,
        )
    except CallInDoubt as exc:  # held by another worker: say so when it is known dead, and what to do
        raise name_dead_holder(exc) from None
    crash_point("after_offer")
    return p


def invoke(
    path: CallPath, spec: ToolSpec, args: Mapping[str, Any], *, key: str | None = None, call_id: str | None = None
) -> Any:
    """Run one guarded call synchronously; returns the tool's result or raises a typed outcome."""
    return invoke_in(path, _scope(), spec, args, key=key, call_id=call_id)


@tracing.traced_call(2, run_at=1)
def invoke_in(
    path: CallPath,
    run: RunScope,
    spec: ToolSpec,
    args: Mapping[str, Any],
    *,
    key: str | None = None,
    call_id: str | None = None,
    compensates: str | None = None,
) -> Any:
    """`invoke` in an explicit run (sagas, recovery and operators act outside the agent's `with` block)."""
    if spec.is_async:
        raise GuardUsageError(f"{spec.name} is async: call it with `await`")
    p = _prepare(path, run, spec, args, key, call_id, compensates)
    while p.offer.kind == "awaiting":
        _decided(
            path,
            p,
            path.waiter.wait(
                p.offer.call_id, p.offer.approval_id or "", p.offer.expires_at or 0.0, _wait_budget(path, p)
            ),
        )
        try:
            p = _prepare(path, run, spec, args, key, call_id, compensates)
        except CallInDoubt as exc:
            path.waiter.wait_out(_running_elsewhere(path, exc), path.approval_timeout)
            p = _prepare(path, run, spec, args, key, call_id, compensates)
        crash_point("after_approved")
    if (done := _short_circuit(path, p)) is not None:
        return done[0]
    return drive_sync(path, _approved(path, p))


@tracing.traced_call(1)
async def ainvoke(
    path: CallPath, spec: ToolSpec, args: Mapping[str, Any], *, key: str | None = None, call_id: str | None = None
) -> Any:
    """Run one guarded call in the event loop (sync tools run inline)."""
    run = _scope()
    p = _prepare(path, run, spec, args, key, call_id)
    while p.offer.kind == "awaiting":
        _decided(
            path,
            p,
            await path.waiter.await_(
                p.offer.call_id, p.offer.approval_id or "", p.offer.expires_at or 0.0, _wait_budget(path, p)
            ),
        )
        try:
            p = _prepare(path, run, spec, args, key, call_id)
        except CallInDoubt as exc:
            await path.waiter.await_out(_running_elsewhere(path, exc), path.approval_timeout)
            p = _prepare(path, run, spec, args, key, call_id)
        crash_point("after_approved")
    if (done := _short_circuit(path, p)) is not None:
        return done[0]
    return await _drive(path, _approved(path, p))


def drive_sync(path: CallPath, p: Prepared) -> Any:
    """Run a call that is `started` under this worker's lease, to its recorded end, from sync code.

    A sync tool runs without a loop. An async one (recovery or an operator re-running a call an async tool
    left behind) gets an event loop of its own: this thread's when none runs here, else a worker thread's.
    """
    if p.input.tool.is_async:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(_drive(path, p))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-async-drive") as pool:
            return pool.submit(asyncio.run, _drive(path, p)).result()
    coro = _drive(path, p)
    try:
        coro.send(None)  # a sync tool never suspends: the coroutine runs to its end in this one step
    except StopIteration as done:
        return done.value
    coro.close()  # pragma: no cover - only a sync tool comes here, and it never suspends
    raise GuardUsageError(f"{p.request.tool} suspended although it is not async")


async def _drive(path: CallPath, p: Prepared) -> Any:
    """Run the tool under the retry rule, settle a failure, record the end: written once for both drivers.

    For a sync tool nothing in here awaits anything that suspends, so `drive_sync` runs it without a loop.
    """
    spec, args = p.input.tool, p.input.args
    scope = _enter_call(path, p)
    token = CALL_VAR.set(scope)
    retried = False
    base = 0
    try:
        while True:
            crash_point("before_tool")
            try:
                if spec.is_async:
                    result, attempts = await run_async(spec.fn, args, p.decision.retry, _on_retry(path, p))
                else:
                    result, attempts = run_sync(spec.fn, args, p.decision.retry, _on_retry(path, p), path.pool)
            except BaseException as exc:  # noqa: BLE001 (a tool's failure of any kind is recorded first)
                settled = _failed(path, p, exc, scope, retried)
                if isinstance(settled, Completed):
                    return settled.value
                retried = True
                base = settled.attempts
                continue
            return _completed(path, p, result, scope, base + attempts)
    except LeaseLost:
        p.input.run.lost.add(p.offer.call_id)  # fenced: this worker is stale for the run (RunHandle._close)
        raise
    finally:
        CALL_VAR.reset(token)
        path.heartbeat.release(p.offer.call_id)


# -- steps shared by both drivers ---------------------------------------------------------------------


def _wait_budget(path: CallPath, p: Prepared) -> float:
    """Seconds to block for a decision; in defer mode the agent is told at once instead."""
    if path.approval == "defer":
        path.log.warning(
            "call waits for approval; run deferred",
            run_id=p.request.run_id,
            call_id=p.offer.call_id,
            tool=p.request.tool,
            approval_id=p.offer.approval_id,
        )
        raise ApprovalPending(
            f"{p.request.tool} waits for approval {p.offer.approval_id}; make the same call again in "
            f"run {p.request.run_id} to resume",
            run_id=p.request.run_id,
            call_id=p.offer.call_id,
            tool=p.request.tool,
            approval_id=p.offer.approval_id,
            expires_at=p.offer.expires_at,
        )
    path.log.warning(
        "call waits for approval",
        run_id=p.request.run_id,
        call_id=p.offer.call_id,
        tool=p.request.tool,
        approval_id=p.offer.approval_id,
        roles=list(p.request.approval_roles),
    )
    return path.approval_timeout


def _running_elsewhere(path: CallPath, exc: CallInDoubt) -> str:
    """After an approval both deliveries of the same call waited on, the other one runs it now: the call to wait
    out (its outcome is then read from the ledger, never run here). Any other doubt is raised as it is."""
    if not exc.in_flight or exc.call_id is None or gone_process(exc.held_by) is not None:
        raise exc
    path.log.info(
        "call approved; another delivery of it runs it: waiting for its outcome",
        call_id=exc.call_id,
        held_by=exc.held_by,
    )
    return exc.call_id


def _decided(path: CallPath, p: Prepared, state: str | None) -> None:
    """After a wait: return to re-offer when the call was approved (and maybe already run by another delivery
    of it: the re-offer returns its recorded result); raise the typed outcome of a refusal or a timeout."""
    if state not in _REFUSED and state is not None:
        path.log.info("call approved", call_id=p.offer.call_id, tool=p.request.tool, state=state)
        return
    if state is None:
        raise ApprovalTimeout(
            f"{p.request.tool}: no decision within {path.approval_timeout:g}s; approval "
            f"{p.offer.approval_id} still stands, call again to keep waiting",
            run_id=p.request.run_id,
            call_id=p.offer.call_id,
            tool=p.request.tool,
            state=CallState.AWAITING_APPROVAL,
            approval_id=p.offer.approval_id,
        )
    approval = path.ledger.approval_for_call(p.offer.call_id)
    reason = (approval.reason if approval is not None else None) or state
    err = decision_outcome(p, state, reason)
    path.log.warning("call " + state, call_id=p.offer.call_id, tool=p.request.tool, reason=reason)
    raise err


# What a wait may end in that means the call will never run.
_REFUSED = frozenset({CallState.REJECTED, CallState.EXPIRED, CallState.DENIED})


def _short_circuit(path: CallPath, p: Prepared) -> tuple[Any] | None:
    """A call that runs nothing: a recorded result (deduplicated) or a refusal."""
    if p.offer.kind == "completed" and p.offer.record is not None:
        path.log.info("call deduplicated: returning the recorded result", call_id=p.offer.call_id, tool=p.request.tool)
        return (p.offer.record.result,)
    if p.offer.kind == "denied":
        err = decision_outcome(p, CallState.DENIED, p.offer.reason)
        path.log.warning("call denied", call_id=p.offer.call_id, tool=p.request.tool, reason=p.offer.reason)
        raise err
    return None


def _approved(path: CallPath, p: Prepared) -> Prepared:
    """The started call with the arguments its approval binds to (a reviewer may have edited them), judged again
    by the team's policy file as it is now: what runs must be allowed for those exact arguments, and enough of
    the approvals must come from reviewers who still hold a required role. Else nothing runs (pending review)."""
    approved = as_approved(p)
    if approved is not None:
        if approved is not p or p.decision.verdict is Verdict.APPROVE:
            approved = _still_approved(path, approved)
        if approved is not p:
            path.log.info(
                "call runs with the arguments its reviewer edited",
                call_id=p.offer.call_id,
                tool=p.request.tool,
                args_hash=p.offer.edited_hash,
            )
        return approved
    error = (
        f"{p.request.tool}: the reviewer's edited arguments cannot be applied exactly (a secret field was "
        "edited, or they do not hash as approved); nothing ran"
    )
    raise _halt(
        path,
        p,
        error,
        f"{p.request.tool}_edit_not_applicable",
        attempts=0,
        next_action=f"reject approval of {p.request.tool} or approve it again without editing secrets",
    )


def _still_approved(path: CallPath, p: Prepared) -> Prepared:
    """`p` under the decision for the arguments that run (an edit has its own class and rules); halts it when
    its approval no longer stands (see `still_approved`)."""
    team, tool = p.request.team, p.request.tool
    approval = path.ledger.approval_for_call(p.offer.call_id)
    policies = policies_now(path.policies, team)
    decision = policies.classify(team, tool, p.input.args)
    why = (
        "no approval is recorded for it"
        if approval is None
        else still_approved(approval, decision, roles_in(policies, team))
    )
    if why is None:
        if p.offer.edited_args is None:
            return p
        if decision.side_effect is not None and decision.side_effect is not p.decision.side_effect:
            path.ledger.reclassify(
                p.request.run_id,
                p.offer.call_id,
                token=p.offer.lease_token,
                side_effect=decision.side_effect.value,
                rule=decision.rule,
                actor=p.request.actor,
                was=p.decision.side_effect.value if p.decision.side_effect is not None else None,
            )
        return p._replace(decision=decision)
    error = f"{tool}: its approval no longer stands ({why}); nothing ran"
    raise _halt(
        path,
        p,
        error,
        f"{tool}_approval_withdrawn",
        attempts=0,
        next_action=f"ask for approval of {tool} again: make the call again in a new run, or finish this one by hand",
    )


def _halt(
    path: CallPath,
    p: Prepared,
    error: str,
    label: str,
    *,
    attempts: int,
    next_action: str,
    external_ids: dict[str, str] | None = None,
) -> CallOutcomeError:
    """Record the started call failed and its run pending review; the typed outcome to raise."""
    path.heartbeat.release(p.offer.call_id)
    path.ledger.fail(
        p.request.run_id,
        p.offer.call_id,
        token=p.offer.lease_token,
        state=CallState.FAILED,
        error=error,
        attempts=attempts,
        actor=p.request.actor,
        external_ids=external_ids or {},
        run=RunClose(
            RunState.PENDING_REVIEW,
            status_label=label.replace(".", "_"),
            error_summary=error,
            requires_review=True,
            next_safe_action=next_action,
        ),
    )
    return _unconfirmed(p, error)


def _enter_call(path: CallPath, p: Prepared) -> CallScope:
    record = p.offer.record
    ids = record.external_id_map if record is not None else {}
    path.heartbeat.hold(p.offer.call_id, p.offer.lease_token)
    return CallScope(
        path.ledger,
        p.request.run_id,
        p.offer.call_id,
        p.request.tool,
        p.request.actor,
        p.request.idempotency_key,
        p.offer.lease_token,
        ids,
        p.secrets,
    )


def _on_retry(path: CallPath, p: Prepared) -> Callable[[int, BaseException], None]:
    def on_retry(attempt: int, exc: BaseException) -> None:
        error = error_text(p, exc)
        path.ledger.record_attempt(
            p.request.run_id, p.offer.call_id, p.offer.lease_token, attempt, error, p.request.actor
        )
        path.log.warning(
            "attempt failed; retrying", call_id=p.offer.call_id, tool=p.request.tool, attempt=attempt, error=error
        )

    return on_retry


def _failed(path: CallPath, p: Prepared, exc: BaseException, scope: CallScope, retried: bool) -> Completed | Retry:
    """Settle a failed run of the tool: the result a reconcile check found, or run it once more; else raises the
    typed outcome (after the saga, when the policy compensates), or the interruption itself."""
    call = path.ledger.get_call(p.offer.call_id)
    attempts = (call.attempts + 1) if call is not None else 1
    match settle(path, p, exc, scope, attempts, retried):
        case Completed() | Retry() as go_on:
            return go_on
        case Compensate(error=error, doubtful=doubtful):
            outcome = compensate_run(
                path,
                p.request.run_id,
                failure=f"{p.request.tool} failed: {error}",
                failed_tool=p.request.tool,
                actor=p.request.actor,
                outcome="in_doubt" if doubtful else "failed",
                failed_call_id=p.offer.call_id,
            )
            where = f"; the run is {outcome.close.state if outcome.close else 'rolling back'}"
            err = failure_outcome(path, p, error, doubtful, where)
        case Stop(outcome=err):
            pass
    if not isinstance(exc, Exception):
        raise exc from None  # an interruption (KeyboardInterrupt, cancellation): recorded, re-raised
    raise err from exc


def compensate_run(
    path: CallPath,
    run_id: str,
    *,
    failure: str,
    failed_tool: str,
    actor: str,
    outcome: str = "failed",
    failed_call_id: str | None = None,
) -> saga.SagaOutcome:
    """The saga of `run_id` (see `saga.compensate_run`), each compensation a guarded call on this path."""
    return saga.compensate_run(
        path,
        partial(invoke_in, path),
        run_id,
        failure=failure,
        failed_tool=failed_tool,
        actor=actor,
        outcome=outcome,
        failed_call_id=failed_call_id,
    )


@tracing.on_completed
def _completed(path: CallPath, p: Prepared, result: Any, scope: CallScope, attempts: int) -> Any:
    crash_point("after_return")
    verify = p.input.tool.hooks.verify
    if verify is not None and not _verified(verify, p, result, scope, attempts):
        error = f"{p.request.tool} returned, but its verification did not confirm the effect"
        raise _halt(
            path,
            p,
            error,
            f"{p.request.tool}_unconfirmed",
            attempts=attempts,
            external_ids=dict(scope.external_ids),
            next_action=f"check {p.request.tool} in the other system; do not repeat it before that",
        )
    record_success(path.ledger, p, result, scope.external_ids, attempts, durability=path.durability)
    crash_point("after_completed")
    path.log.info("call completed", call_id=p.offer.call_id, tool=p.request.tool, side_effect=p.request.side_effect)
    return result


def _verified(
    verify: Callable[[Any, ReconcileContext], bool], p: Prepared, result: Any, scope: CallScope, attempts: int
) -> bool:
    ctx = ReconcileContext(
        run_id=p.request.run_id,
        call_id=p.offer.call_id,
        tool=p.request.tool,
        args=p.input.args,
        idempotency_key=p.request.idempotency_key,
        external_ids=dict(scope.external_ids),
        attempts=attempts,
    )
    try:
        return verify(result, ctx) is True
    except Exception:  # noqa: BLE001 (a verify hook that raises has not verified: fail closed)
        return False


def _unconfirmed(p: Prepared, error: str) -> CallOutcomeError:
    return CallFailed(
        error,
        run_id=p.request.run_id,
        call_id=p.offer.call_id,
        tool=p.request.tool,
        state=CallState.FAILED,
        error=error,
        on_failure="halt",
    )
