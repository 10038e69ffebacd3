"""What still keeps a stopped run waiting for a person, and moving the run on once nothing does.

A run stops for review because of its calls: one in doubt, one that failed, a compensation that failed. When
recovery or an operator settles such a call (its reconcile check found the effect, or it ran once more and
completed), `after_settled` looks at the run again:

- nothing is left: the run is `running` again, with no stale label or next action; delivering its event again
  lets the agent go on (every completed call returns its recorded result);
- something is left: the run stays (or goes back) in `pending_review`, and its next safe action names each call
  that is left and the command that continues it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from guard.errors import IllegalTransition
from guard.ledger import CallRecord, CallState, RunClose, RunRecord, RunState
from guard.policy import OnFailure
from guard.runtime.callpath import CallPath

__all__ = ["after_settled", "next_steps", "outstanding"]

C = CallState
# A call in one of these states needs a person (or recovery) before its run may go on.
_NEEDS_A_PERSON = frozenset({C.IN_DOUBT, C.STARTED, C.FAILED, C.ROLLING_BACK, C.ROLLBACK_FAILED})


def outstanding(path: CallPath, calls: Sequence[CallRecord]) -> list[CallRecord]:
    """The calls that keep their run in review. A failed compensation counts through the call it compensates
    (`rollback_failed`), not twice; a failed call whose rule says `on_failure: continue` does not count (the
    run went on past it by design)."""
    return [
        c
        for c in calls
        if c.state in _NEEDS_A_PERSON
        and not (
            c.state == C.FAILED
            and (
                c.compensates_call_id is not None
                or path.policies.classify(c.team, c.tool, json.loads(path.ledger.args_run_with(c))).on_failure
                is OnFailure.CONTINUE
            )
        )
    ]


def next_steps(run_id: str, left: Sequence[CallRecord]) -> str:
    """The next safe action of a run with calls left: each call, and the commands that continue the run."""
    calls = ", ".join(f"#{c.seq} {c.tool} {c.state} ({c.call_id})" for c in left)
    return (
        f"left for review: {calls}. `guard runs retry-call {run_id} CALL --app MODULE:GUARD --note ...` "
        "settles a call (a call that is not repeat-safe is reconciled first, never re-run blindly); "
        f"`guard runs compensate {run_id} --app MODULE:GUARD --note ...` undoes the run; "
        f"`guard runs finish {run_id} --note ...` closes it by hand"
    )


def after_settled(
    path: CallPath, run_id: str, *, actor: str, settled: str, expect: frozenset[RunState]
) -> RunRecord | None:
    """After a call of `run_id` settled (`settled` says how): move the run on, or say what is left.

    Only a run in `expect` is touched (recovery passes `pending_review`: a run that is running belongs to its
    agent). Returns the run as it is now, or None when there is no such run.
    """
    ledger = path.ledger
    run = ledger.get_run(run_id)
    if run is None or run.state not in expect:
        return run
    left = outstanding(path, ledger.calls_of(run_id))
    if left:
        close = RunClose(
            RunState.PENDING_REVIEW,
            status_label=run.status_label,
            error_summary=run.error_summary,
            next_safe_action=next_steps(run_id, left),
            requires_review=True,
        )
    else:
        close = RunClose(
            RunState.RUNNING,
            next_safe_action=(
                f"{settled}; nothing is left for review: deliver the run's event again to let the agent go on "
                "(its completed calls return their recorded results)"
            ),
        )
    try:
        return ledger.move_run(run_id, close, actor=actor, expect=expect, detail={"settled": settled})
    except IllegalTransition:  # the run moved meanwhile (its agent resumed it, an operator acted): that stands
        return ledger.get_run(run_id)
