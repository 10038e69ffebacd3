"""Read-only views of ledger rows, as the rest of Guard sees them (plain frozen dataclasses, no ORM).

States and side-effect classes are enums (`CallState`, `RunState`, `ApprovalState`, `SideEffectClass`); each is a
`StrEnum`, so it compares equal to the string stored in its column and prints as that string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Self

from guard.ledger.states import ApprovalState, CallState, RunState
from guard.side_effects import SideEffectClass

__all__ = [
    "ApprovalRecord",
    "CallRecord",
    "DecisionRecord",
    "EventRecord",
    "ManualActionRecord",
    "NoticeEvent",
    "NotificationRecord",
    "RunRecord",
]


class _Row:
    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # pyright: ignore[reportArgumentType]

    @classmethod
    def sql_columns(cls) -> str:
        return ", ".join(cls.columns())

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Self:
        return cls(*row)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.columns()}


@dataclass(frozen=True, slots=True)
class RunRecord(_Row):
    run_id: str
    team: str
    source_event_id: str | None
    subject: str | None
    state: RunState
    status_label: str | None
    next_safe_action: str | None
    requires_review: bool
    error_summary: str | None
    created_by: str | None
    created_at: float
    updated_at: float
    last_call_id: str | None  # derived: the latest completed forward call (the calls table is the truth)
    call_count: int  # derived

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", RunState(self.state))

    @classmethod
    def stored_columns(cls) -> tuple[str, ...]:
        """The columns of the `runs` table (the last two fields are derived from `calls`)."""
        return cls.columns()[:-2]

    @classmethod
    def sql_columns(cls, of: str = "r") -> str:
        """The record's columns, the derived ones as subqueries, for a statement that names the runs table `of`
        (`FROM runs r`, or `runs` in an `UPDATE runs ... RETURNING`)."""
        stored = ", ".join(f"{of}.{c}" for c in cls.stored_columns())
        return (
            f"{stored}, (SELECT c.call_id FROM calls c WHERE c.run_id = {of}.run_id AND c.state = 'completed' "
            "AND c.compensates_call_id IS NULL ORDER BY c.seq DESC LIMIT 1), "
            f"(SELECT COUNT(*) FROM calls c WHERE c.run_id = {of}.run_id)"
        )


@dataclass(frozen=True, slots=True)
class CallRecord(_Row):
    call_id: str
    run_id: str
    seq: int
    team: str
    tool: str
    side_effect: SideEffectClass | None
    rule: str | None
    policy_version: str
    args_json: str
    args_hash: str
    idempotency_key: str | None
    requested_key: str | None  # the key as offered, once it was released (denied, rejected, expired)
    state: CallState
    attempts: int
    external_ids: str
    result_json: str | None
    error: str | None
    reason: str | None
    compensates_call_id: str | None
    requested_by: str | None
    offered_at: float
    approved_at: float | None
    started_at: float | None
    ended_at: float | None
    updated_at: float
    lease_owner: str | None
    lease_token: int
    lease_expires_at: float | None

    def __post_init__(self) -> None:
        # Rows come back as the strings stored; the record holds the enums (a StrEnum equals its string).
        object.__setattr__(self, "state", CallState(self.state))
        if self.side_effect is not None:
            object.__setattr__(self, "side_effect", SideEffectClass(self.side_effect))

    @property
    def offered_key(self) -> str | None:
        """The idempotency key the call was offered with (held, or released once it provably never ran)."""
        return self.idempotency_key or self.requested_key

    @property
    def args(self) -> dict[str, Any]:
        return json.loads(self.args_json)

    @property
    def result(self) -> Any:
        return None if self.result_json is None else json.loads(self.result_json)

    @property
    def external_id_map(self) -> dict[str, str]:
        return json.loads(self.external_ids)


@dataclass(frozen=True, slots=True)
class ApprovalRecord(_Row):
    approval_id: str
    call_id: str
    run_id: str
    team: str
    tool: str
    rule: str | None
    args_hash: str
    args_json: str
    roles: str
    quorum: int
    requested_by: str | None
    requested_at: float
    expires_at: float
    state: ApprovalState
    decided_at: float | None
    decided_by: str | None
    reason: str | None
    approved_args_hash: str | None
    approved_args_json: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", ApprovalState(self.state))

    @property
    def role_list(self) -> list[str]:
        return json.loads(self.roles)

    @property
    def decider_list(self) -> list[str]:
        """The reviewers whose approvals settled it (empty while pending, or when expiry settled it)."""
        return json.loads(self.decided_by) if self.decided_by else []


@dataclass(frozen=True, slots=True)
class DecisionRecord(_Row):
    id: int
    approval_id: str
    reviewer: str
    decision: str
    reason: str | None
    args_hash: str
    edited_args_json: str | None
    at: float


@dataclass(frozen=True, slots=True)
class EventRecord(_Row):
    id: int
    run_id: str | None
    call_id: str | None
    at: float
    actor: str
    entity: str
    from_state: str | None
    to_state: str
    detail: str
    hash: str
    stream: str
    seq: int
    row_table: str | None
    row_key: str | None
    row_digest: str | None

    @property
    def path(self) -> tuple[str, ...]:
        """Every state this event moved its call or run through, in order, ending at `to_state`.

        One state for most events. A new call's first commit is one event (entity `call`, from no state) whose
        detail names its whole path, e.g. `offered -> approved -> started` for an auto-approved call: those moves
        happen in one transaction at one instant. Ledgers written before that hold one event per move, each
        with a path of one state; both read the same through `path` and `moves`.
        """
        if self.from_state is None and self.entity == "call" and '"path"' in self.detail:
            detail: dict[str, Any] = json.loads(self.detail)
            steps = tuple(str(s) for s in detail.get("path") or ())
            if steps and steps[-1] == self.to_state:
                return steps
        return (self.to_state,)

    @property
    def moves(self) -> tuple[tuple[str | None, str], ...]:
        """The transitions this event records, as (from, to) pairs: `from_state -> to_state`, or each step of
        its `path`."""
        path = self.path
        return tuple(zip((self.from_state, *path[:-1]), path, strict=True))


@dataclass(frozen=True, slots=True)
class ManualActionRecord(_Row):
    id: int
    run_id: str
    call_id: str | None
    operator: str
    action: str
    note: str
    at: float


@dataclass(frozen=True, slots=True)
class NotificationRecord(_Row):
    id: int
    event_id: int
    team: str
    kind: str
    run_id: str | None
    call_id: str | None
    approval_id: str | None
    target: str
    state: str
    attempts: int
    last_error: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class NoticeEvent:
    """A ledger event a team's channel may need to hear of, with the run's team (a pause's own team when it
    belongs to no run). `detail`: the event's detail, for a pause or a tripped stop rule."""

    event_id: int
    kind: str  # approval_waiting | run_halted | paused | stop_tripped
    team: str
    run_id: str | None
    call_id: str | None
    to_state: str
    detail: dict[str, Any] = field(default_factory=lambda: {})
    actor: str = ""
