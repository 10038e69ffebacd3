"""Call and run states, and the one table of legal transitions the ledger accepts.

Every state change in the ledger is checked here first and then written as a compare-and-set
(`UPDATE ... WHERE id = ? AND state = ?`), so an illegal move or a lost race is refused, never applied.
"""

from __future__ import annotations

from enum import StrEnum

from guard.errors import IllegalTransition

__all__ = [
    "CALL_TRANSITIONS",
    "FINISHED_RUN_STATES",
    "KEY_RELEASING_STATES",
    "OPEN_RUN_STATES",
    "RUN_TRANSITIONS",
    "UNSETTLED_SQL",
    "ApprovalState",
    "CallState",
    "IncidentState",
    "NoticeState",
    "RunState",
    "check_call_move",
    "check_run_move",
]


class CallState(StrEnum):
    OFFERED = "offered"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DENIED = "denied"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


class RunState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # waiting on a human decision
    COMPLETED = "completed"  # the agent finished it
    FINISHED_BY_HAND = "finished_by_hand"  # an operator closed it after a stop, with a note (`guard runs finish`)
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    PENDING_REVIEW = "pending_review"
    HALTED = "halted"


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class IncidentState(StrEnum):
    """An incident's states (`guard.ledger.incidents`): `open -> closed`, once."""

    OPEN = "open"
    CLOSED = "closed"


class NoticeState(StrEnum):
    """What became of a notification (`guard.ledger.notices`): claimed and `sending`, then `sent`, `failed` or
    `skipped`."""

    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


C = CallState
# `None` is "no row yet": a call enters the ledger as `offered`.
# `started -> started` is a further attempt of a repeat-safe call, or a takeover (recorded as its own event);
# `in_doubt -> in_doubt` is a recoverer taking the call over (a new lease) before its reconcile check.
CALL_TRANSITIONS: dict[CallState | None, frozenset[CallState]] = {
    None: frozenset({C.OFFERED}),
    C.OFFERED: frozenset({C.AWAITING_APPROVAL, C.APPROVED, C.DENIED}),
    C.AWAITING_APPROVAL: frozenset({C.APPROVED, C.REJECTED, C.EXPIRED}),
    C.APPROVED: frozenset({C.STARTED, C.EXPIRED}),
    C.STARTED: frozenset({C.STARTED, C.COMPLETED, C.FAILED, C.IN_DOUBT}),
    C.IN_DOUBT: frozenset({C.IN_DOUBT, C.COMPLETED, C.FAILED, C.STARTED, C.ROLLING_BACK}),
    # `failed -> completed`: an operator's retry asked the reconcile check first and it found the effect (the
    # failure was not clean); nothing ran again.
    C.FAILED: frozenset({C.STARTED, C.ROLLING_BACK, C.COMPLETED}),
    C.COMPLETED: frozenset({C.ROLLING_BACK}),
    C.ROLLING_BACK: frozenset({C.ROLLED_BACK, C.ROLLBACK_FAILED}),
    C.ROLLBACK_FAILED: frozenset({C.ROLLING_BACK, C.ROLLED_BACK}),
    C.REJECTED: frozenset(),
    C.EXPIRED: frozenset(),
    C.DENIED: frozenset(),
    C.ROLLED_BACK: frozenset(),
}

# In these states the call provably never ran, so its idempotency key is released for a fresh offer.
KEY_RELEASING_STATES: frozenset[CallState] = frozenset({C.DENIED, C.REJECTED, C.EXPIRED})
# The calls recovery looks for, as SQL: the partial index `ix_calls_unsettled` (migration 0005) holds exactly
# these, and SQLite uses it only for a query that carries this same predicate.
UNSETTLED_SQL = "state IN ('started', 'in_doubt')"

R = RunState
RUN_TRANSITIONS: dict[RunState | None, frozenset[RunState]] = {
    None: frozenset({R.RUNNING}),
    R.RUNNING: frozenset({R.PAUSED, R.COMPLETED, R.ROLLING_BACK, R.PENDING_REVIEW, R.HALTED}),
    R.PAUSED: frozenset({R.RUNNING, R.COMPLETED, R.ROLLING_BACK, R.PENDING_REVIEW, R.HALTED}),
    R.ROLLING_BACK: frozenset({R.ROLLED_BACK, R.PENDING_REVIEW}),
    R.PENDING_REVIEW: frozenset({R.RUNNING, R.ROLLING_BACK, R.FINISHED_BY_HAND, R.HALTED}),
    R.HALTED: frozenset({R.RUNNING, R.PENDING_REVIEW, R.FINISHED_BY_HAND}),
    R.ROLLED_BACK: frozenset(),
    R.COMPLETED: frozenset(),
    R.FINISHED_BY_HAND: frozenset(),
}

# A run in these states accepts new calls.
OPEN_RUN_STATES: frozenset[RunState] = frozenset({R.RUNNING, R.PAUSED})
# A run in these states is over: nothing is left to do in it, by the agent or by a person.
FINISHED_RUN_STATES: frozenset[RunState] = frozenset({R.COMPLETED, R.FINISHED_BY_HAND, R.ROLLED_BACK})


def check_call_move(call_id: str, src: CallState | None, dst: CallState) -> None:
    """Raise IllegalTransition unless `src -> dst` is in CALL_TRANSITIONS."""
    if dst not in CALL_TRANSITIONS[src]:
        raise IllegalTransition(
            f"call {call_id}: {src or 'new'} -> {dst} is not a legal transition",
            entity="call",
            id=call_id,
            from_state=src,
            to_state=dst,
        )


def check_run_move(run_id: str, src: RunState | None, dst: RunState) -> None:
    """Raise IllegalTransition unless `src -> dst` is in RUN_TRANSITIONS (or src == dst)."""
    if src != dst and dst not in RUN_TRANSITIONS[src]:
        raise IllegalTransition(
            f"run {run_id}: {src or 'new'} -> {dst} is not a legal transition",
            entity="run",
            id=run_id,
            from_state=src,
            to_state=dst,
        )
