"""What an operator does with a run that halted: retry a call, run the remaining compensations, or finish
it by hand. Each is recorded in the ledger as a manual action with the operator's note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guard.errors import GuardUsageError, IllegalTransition
from guard.ledger import CallState, Ledger, RunRecord, RunState
from guard.ledger.moves import RunClose
from guard.runtime.recovery import RecoveryReport, run_claimed
from guard.runtime.saga import SagaOutcome, compensate_run

if TYPE_CHECKING:
    from guard.runtime.guard import Guard

__all__ = ["compensate", "finish", "retry_call"]

# A run an operator may act on: it stopped and waits for a person.
_STOPPED = frozenset({RunState.PENDING_REVIEW, RunState.HALTED})


def _stopped_run(ledger: Ledger, run_id: str) -> RunRecord:
    run = ledger.get_run(run_id)
    if run is None:
        raise GuardUsageError(f"no run {run_id}; list them with `guard runs list`", run_id=run_id)
    if run.state not in _STOPPED:
        raise IllegalTransition(f"run {run_id} is {run.state}: only a run that halted or waits for review is "
                                "finished, retried or compensated by hand", entity="run", id=run_id,
                                from_state=run.state, to_state=RunState.COMPLETED)
    return run


def finish(ledger: Ledger, run_id: str, *, operator: str, note: str) -> RunRecord:
    """Close a stopped run as `completed` by hand: the note says what the operator did and why."""
    run = _stopped_run(ledger, run_id)
    if run.state == RunState.HALTED:
        ledger.move_run(run_id, RunClose(RunState.PENDING_REVIEW, status_label=run.status_label,
                                         error_summary=run.error_summary), actor=operator)
    ledger.record_manual_action(run_id, operator=operator, action="finish", note=note,
                                run=RunClose(RunState.COMPLETED, status_label=run.status_label,
                                             error_summary=run.error_summary,
                                             next_safe_action=f"finished by hand by {operator}: {note}"))
    finished = ledger.get_run(run_id)
    assert finished is not None
    return finished


def retry_call(guard: Guard, run_id: str, call_id: str, *, operator: str, note: str) -> RecoveryReport:
    """Run a `failed` or `in_doubt` call once more with its recorded arguments and key; on success the run is
    `running` again (replay the event to let the agent go on)."""
    run = _stopped_run(guard.ledger, run_id)
    call = guard.ledger.get_call(call_id)
    if call is None or call.run_id != run_id:
        raise GuardUsageError(f"no call {call_id} in run {run_id}", run_id=run_id, call_id=call_id)
    if call.state not in (CallState.FAILED, CallState.IN_DOUBT):
        raise IllegalTransition(f"call {call_id} is {call.state}: only a failed or in-doubt call is retried",
                                entity="call", id=call_id, from_state=call.state, to_state=CallState.STARTED)
    tool = guard.tool_named(call.tool)
    if tool is None:
        raise GuardUsageError(f"this Guard has no tool {call.tool}: pass the agent's app with --app", tool=call.tool)
    guard.ledger.record_manual_action(run_id, operator=operator, action="retry-call", note=note, call_id=call_id,
                                      run=RunClose(RunState.RUNNING, status_label=run.status_label,
                                                   error_summary=run.error_summary))
    token = guard.ledger.claim(call, worker=guard.worker_id, ttl=guard.lease_ttl, actor=operator,
                               to=CallState.STARTED)
    report = RecoveryReport()
    if token is None:
        raise IllegalTransition(f"call {call_id} changed while retrying; look again", entity="call", id=call_id,
                                from_state=call.state, to_state=CallState.STARTED)
    run_claimed(guard, call, tool, token, report, actor=operator)
    report.retried += 1
    return report


def compensate(guard: Guard, run_id: str, *, operator: str, note: str) -> SagaOutcome:
    """Run the compensations of a stopped run's standing calls (again); each runs at most once."""
    run = _stopped_run(guard.ledger, run_id)
    guard.ledger.record_manual_action(run_id, operator=operator, action="compensate", note=note)
    failed = next((c for c in guard.ledger.calls_of(run_id)
                   if c.state in (CallState.FAILED, CallState.IN_DOUBT) and c.compensates_call_id is None), None)
    # The run's summary keeps naming the failure that started it all.
    cause = (run.error_summary or "").split(". Undone:", 1)[0] or f"compensation requested by {operator}"
    return compensate_run(guard, run_id, failure=cause, failed_tool=failed.tool if failed is not None else "run",
                          actor=operator)
