"""What an operator does with a run that halted: retry a call, run the remaining compensations, or finish
it by hand. Each is recorded in the ledger as a manual action with the operator's note.

An operator's action is as safe as the agent's own path: a retry of a call that is not repeat-safe goes
through the same reconcile step as recovery (`recovery.ask_reconcile`), so money never moves twice because a
person pressed retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guard.errors import CallInDoubt, GuardUsageError, IllegalTransition
from guard.ledger import CallRecord, CallState, Ledger, ReadsPort, RunClose, RunRecord, RunState
from guard.runtime.callpath import CallPath
from guard.runtime.doors import ledger_of
from guard.runtime.driver import compensate_run
from guard.runtime.hooks import Found, NotFound
from guard.runtime.recovery import (
    RecoveryReport,
    Unknown,
    ask_reconcile,
    record_found,
    repeat_safe,
    replayable,
    run_once,
)
from guard.runtime.saga import SagaOutcome, failure_of
from guard.runtime.settled_runs import after_settled

if TYPE_CHECKING:
    from guard.runtime.guard import Guard

__all__ = ["compensate", "finish", "retry_call"]

# A run an operator may act on: it stopped and waits for a person.
_STOPPED = frozenset({RunState.PENDING_REVIEW, RunState.HALTED})


def _stopped_run(ledger: ReadsPort, run_id: str, to: RunState) -> RunRecord:
    run = ledger.get_run(run_id)
    if run is None:
        raise GuardUsageError(f"no run {run_id}; list them with `guard runs list`", run_id=run_id)
    if run.state not in _STOPPED:
        raise IllegalTransition(
            f"run {run_id} is {run.state}: only a run that halted or waits for review is "
            "finished, retried or compensated by hand",
            entity="run",
            id=run_id,
            from_state=run.state,
            to_state=to,
        )
    return run


def finish(ledger: Ledger, run_id: str, *, operator: str, note: str) -> RunRecord:
    """Close a stopped run as `finished_by_hand`: never `completed`, which only an agent that finished its work
    records. The run keeps its label and error summary (what went wrong); the note says what the operator did
    and why (a manual action, shown with the run)."""
    run = _stopped_run(ledger, run_id, RunState.FINISHED_BY_HAND)
    ledger.record_manual_action(
        run_id,
        operator=operator,
        action="finish",
        note=note,
        run=RunClose(RunState.FINISHED_BY_HAND, status_label=run.status_label, error_summary=run.error_summary),
    )
    finished = ledger.get_run(run_id)
    assert finished is not None
    return finished


def retry_call(
    guard: Guard, run_id: str, call_id: str, *, operator: str, note: str, confirmed_absent: bool = False
) -> RecoveryReport:
    """Settle a `failed` or `in_doubt` call of a stopped run, exactly as recovery would, never blindly.

    - A repeat-safe call (read, idempotent) runs again with its recorded arguments and key.
    - Any other call goes through its tool's reconcile check first (`recovery.ask_reconcile`): found -> it is
      recorded `completed` with what was found and nothing runs; confirmed absent -> it runs once with the same
      key; no check, or a check that cannot tell -> refused (`CallInDoubt`, saying why and what to do), unless
      `confirmed_absent`: the operator checked the other system and vouches the effect is not there (recorded).
      A disagreement between the check and the ledger, or arguments the ledger holds only redacted, is always
      refused.

    When the call ends `completed`, the run moves on (`settled_runs.after_settled`): `running` when nothing else is
    left for review (deliver its event again to let the agent go on), else back in `pending_review` naming
    what is left. Every retry is a manual action with the operator's note.
    """
    path = guard.path
    run = _stopped_run(path.ledger, run_id, RunState.RUNNING)
    call = path.ledger.get_call(call_id)
    if call is None or call.run_id != run_id:
        raise GuardUsageError(f"no call {call_id} in run {run_id}", run_id=run_id, call_id=call_id)
    if call.state not in (CallState.FAILED, CallState.IN_DOUBT):
        raise IllegalTransition(
            f"call {call_id} is {call.state}: only a failed or in-doubt call is retried",
            entity="call",
            id=call_id,
            from_state=call.state,
            to_state=CallState.STARTED,
        )
    tool = path.tools.get(call.tool)
    if tool is None:
        raise GuardUsageError(f"this Guard has no tool {call.tool}: pass the agent's app with --app", tool=call.tool)
    report = RecoveryReport()
    ids = {"run_id": run_id, "call_id": call_id, "tool": call.tool, "state": call.state}
    action = "retry-call"
    blind = repeat_safe(path, call)
    if not blind:
        answer = ask_reconcile(path, call)
        if isinstance(answer, Found):
            path.ledger.record_manual_action(run_id, operator=operator, action=action, note=note, call_id=call_id)
            record_found(path, call, answer, actor=operator)
            report.reconciled += 1
            _moved_on(path, call, operator, f"#{call.seq} {call.tool} was found by its reconcile check")
            return report
        if isinstance(answer, Unknown):
            if not (answer.replayable and confirmed_absent):
                raise CallInDoubt(_refusal(call, answer), error=answer.why, **ids)
            action = "retry-call --confirmed-absent"
        report.reconciled += isinstance(answer, NotFound)
    elif not replayable(path, call):
        raise CallInDoubt(
            f"{call.tool} #{call.seq} was not retried: its recorded arguments are redacted, so the "
            "ledger cannot replay them; run it by hand, then `guard runs finish "
            f"{run_id} --note ...`",
            error="arguments redacted",
            **ids,
        )
    path.ledger.record_manual_action(
        run_id,
        operator=operator,
        action=action,
        note=note,
        call_id=call_id,
        run=RunClose(RunState.RUNNING, status_label=run.status_label, error_summary=run.error_summary),
    )
    if not run_once(path, call, tool, report, actor=operator):
        raise IllegalTransition(
            f"call {call_id} changed while retrying; look again",
            entity="call",
            id=call_id,
            from_state=call.state,
            to_state=CallState.STARTED,
        )
    report.retried += 1
    report.ran_once += not blind
    _moved_on(path, call, operator, f"#{call.seq} {call.tool} ran again by hand and completed")
    return report


def _refusal(call: CallRecord, answer: Unknown) -> str:
    """Why an operator's retry was refused, and what to do instead."""
    text = f"{call.tool} #{call.seq} was not retried: {answer.why}; it is never re-run blindly. "
    if answer.replayable:
        return text + (
            f"Check the other system for its idempotency key {call.offered_key or '-'}: if the effect "
            "is there, close the run by hand (`guard runs finish " + call.run_id + " --note ...`); if it "
            "is not, retry with `--confirmed-absent` (recorded with your note)"
        )
    return text + f"Settle it in the other system by hand, then `guard runs finish {call.run_id} --note ...`"


def _moved_on(path: CallPath, call: CallRecord, operator: str, how: str) -> None:
    done = path.ledger.get_call(call.call_id)
    if done is not None and done.state == CallState.COMPLETED:
        after_settled(path, call.run_id, actor=operator, settled=how, expect=frozenset({RunState.RUNNING, *_STOPPED}))


def compensate(guard: Guard, run_id: str, *, operator: str, note: str) -> SagaOutcome:
    """Run the compensations of a stopped run's standing calls (again); each runs at most once."""
    _stopped_run(guard.ledger, run_id, RunState.ROLLING_BACK)
    ledger_of(guard).record_manual_action(run_id, operator=operator, action="compensate", note=note)
    failed = next(
        (
            c
            for c in guard.ledger.calls_of(run_id)
            if c.state in (CallState.FAILED, CallState.IN_DOUBT) and c.compensates_call_id is None
        ),
        None,
    )
    # The run's summary keeps naming the failure that started it all, as the call that failed records it.
    cause = failure_of(failed) or f"compensation requested by {operator}"
    return compensate_run(
        guard.path, run_id, failure=cause, failed_tool=failed.tool if failed is not None else "run", actor=operator
    )
