"""The ledger's tables, declared once with SQLModel; the migrations in `migrations/` create exactly these.

Times are Unix epoch seconds (float): one portable, sortable type on SQLite and PostgreSQL.
JSON columns hold text written by the ledger (redacted before it arrives here).
"""

from __future__ import annotations

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from guard.ledger.states import UNSETTLED_SQL

# The call events the three numbers' window reads (guard.ledger.numbers); the partial index of migration 0012.
FAILURE_EVENTS_SQL = "entity = 'call' AND to_state IN ('failed', 'in_doubt')"

__all__ = [
    "Approval",
    "ApprovalDecision",
    "Call",
    "Drill",
    "Event",
    "ManualAction",
    "Pause",
    "RateWindow",
    "Restart",
    "RestartCall",
    "ReviewerToken",
    "Run",
    "Seal",
    "SealedHead",
    "SeenRequest",
    "ShadowCount",
    "StopMark",
    "StreamHead",
    "metadata",
]


class Run(SQLModel, table=True):
    __tablename__ = "runs"  # pyright: ignore[reportAssignmentType]

    run_id: str = Field(primary_key=True)
    team: str = Field(index=True)
    source_event_id: str | None = None
    subject: str | None = None
    state: str = Field(index=True)
    status_label: str | None = None  # operator-facing named state, e.g. invoice_created_provisioning_failed
    next_safe_action: str | None = None
    requires_review: bool = False
    error_summary: str | None = None
    created_by: str | None = None
    created_at: float
    updated_at: float


class Call(SQLModel, table=True):
    __tablename__ = "calls"  # pyright: ignore[reportAssignmentType]
    __table_args__ = (
        UniqueConstraint("run_id", "seq", name="uq_calls_run_seq"),
        UniqueConstraint("team", "idempotency_key", name="uq_calls_team_key"),
        # Only the calls recovery looks for: as small as the work in flight (migration 0005).
        Index("ix_calls_unsettled", "state", sqlite_where=text(UNSETTLED_SQL), postgresql_where=text(UNSETTLED_SQL)),
        # The three numbers' window (migration 0012): the calls offered since a time.
        Index("ix_calls_offered_at", "offered_at"),
    )

    call_id: str = Field(primary_key=True)
    run_id: str = Field(foreign_key="runs.run_id")
    seq: int
    team: str
    tool: str
    side_effect: str | None = None
    rule: str | None = None
    policy_version: str
    args_json: str  # redacted
    args_hash: str  # over the real arguments (RFC 8785 + SHA-256)
    idempotency_key: str | None = None  # NULL once the call provably never ran (denied/rejected/expired)
    requested_key: str | None = None  # the key as offered, kept once the call released it
    state: str
    attempts: int = 0
    external_ids: str = "{}"
    result_json: str | None = None  # redacted
    error: str | None = None
    reason: str | None = None  # why denied / rejected
    compensates_call_id: str | None = None
    requested_by: str | None = None
    offered_at: float
    approved_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    updated_at: float
    lease_owner: str | None = None  # the worker holding a started call
    lease_token: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # fencing: +1 per takeover
    lease_expires_at: float | None = None


class Event(SQLModel, table=True):
    """Append-only audit trail, one hash chain per stream (guard.ledger.chain): `hash = sha256(hash of the
    stream's event before + place + fields)`. An event may carry the claim of a row its transaction wrote
    (`row_table`, `row_key`, `row_digest`: guard.ledger.digests)."""

    __tablename__ = "events"  # pyright: ignore[reportAssignmentType]
    # No index on the claims: verify sorts them once, and every call's commit is spared a B-tree insert.
    __table_args__ = (
        Index("ix_events_run", "run_id", "id"),
        # Only the failures, for the three numbers' window (migration 0012): a call that went well never enters it.
        Index(
            "ix_events_failures", "at", sqlite_where=text(FAILURE_EVENTS_SQL), postgresql_where=text(FAILURE_EVENTS_SQL)
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str | None = None
    call_id: str | None = None
    at: float
    actor: str
    entity: str  # call | run | approval | pause | manual
    from_state: str | None = None
    to_state: str
    detail: str = "{}"
    hash: str
    stream: str = Field(default="", sa_column_kwargs={"server_default": ""})
    seq: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # 1, 2, ... within the stream
    row_table: str | None = None
    row_key: str | None = None
    row_digest: str | None = None


class StreamHead(SQLModel, table=True):
    """The head of one stream's chain: written in the transaction that appends to it (guard.ledger.chain)."""

    __tablename__ = "stream_heads"  # pyright: ignore[reportAssignmentType]

    stream: str = Field(primary_key=True)
    length: int
    head: str


class SealedHead(SQLModel, table=True):
    """Each stream's head as the last seal signed it: what the next seal leaves out when unchanged."""

    __tablename__ = "sealed_heads"  # pyright: ignore[reportAssignmentType]

    stream: str = Field(primary_key=True)
    length: int
    head: str


class Seal(SQLModel, table=True):
    """A signed checkpoint of every stream's head (guard.ledger.seals); also kept outside the database."""

    __tablename__ = "seals"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    at: float
    root: str  # Merkle root over (stream, length, head) of every stream
    streams: int
    events: int
    key_id: str  # SHA-256 of the public key, first 16 hex digits
    body: str  # the signed JSON, as signed
    signature: str  # Ed25519 over `body`, base64


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"  # pyright: ignore[reportAssignmentType]
    __table_args__ = (Index("ix_approvals_decided", "decided_at"),)  # the three numbers' window (migration 0012)

    approval_id: str = Field(primary_key=True)
    call_id: str = Field(foreign_key="calls.call_id", unique=True)
    run_id: str = Field(index=True)
    team: str
    tool: str
    rule: str | None = None
    args_hash: str
    args_json: str
    roles: str  # JSON list
    quorum: int = 1
    requested_by: str | None = None
    requested_at: float
    expires_at: float
    state: str = Field(index=True)
    decided_at: float | None = None
    decided_by: str | None = None  # JSON list of reviewers whose decisions settled it
    reason: str | None = None
    approved_args_hash: str | None = None  # differs from args_hash when a reviewer edited the arguments
    approved_args_json: str | None = None


class ApprovalDecision(SQLModel, table=True):
    __tablename__ = "approval_decisions"  # pyright: ignore[reportAssignmentType]
    __table_args__ = (UniqueConstraint("approval_id", "reviewer", name="uq_decision_reviewer"),)

    id: int | None = Field(default=None, primary_key=True)
    approval_id: str = Field(foreign_key="approvals.approval_id")
    reviewer: str
    decision: str  # approve | reject | edit
    reason: str | None = None
    args_hash: str  # the hash the reviewer was shown and decided on
    edited_args_json: str | None = None
    at: float


class ManualAction(SQLModel, table=True):
    __tablename__ = "manual_actions"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.run_id", index=True)
    call_id: str | None = None
    operator: str
    action: str
    note: str
    at: float


class Pause(SQLModel, table=True):
    """A kill switch: pauses a team, a tool (glob) of a team, or one run until lifted."""

    __tablename__ = "pauses"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    scope: str  # team | tool | run
    team: str | None = None
    target: str  # team name, tool glob, or run id
    reason: str
    paused_by: str
    at: float
    lifted_at: float | None = Field(default=None, index=True)
    lifted_by: str | None = None


class RateWindow(SQLModel, table=True):
    """Calls made in the current window of a team's `stop.rate` rule (one row per team, pattern and period)."""

    __tablename__ = "rate_windows"  # pyright: ignore[reportAssignmentType]

    team: str = Field(primary_key=True)
    pattern: str = Field(primary_key=True)
    period: float = Field(primary_key=True)  # seconds
    window: int  # the database clock // period
    calls: int


class StopMark(SQLModel, table=True):
    """What a stop rule on named arguments counted: a distinct value's digest in a run or window (`records`), or one
    call's values in the window of a `duplicates` rule."""

    __tablename__ = "stop_marks"  # pyright: ignore[reportAssignmentType]
    __table_args__ = (
        Index("ix_stop_marks_lookup", "team", "rule", "scope", "mark"),
        Index("ix_stop_marks_scope", "scope"),  # a run's rows, deleted when it ends
    )

    id: int | None = Field(default=None, primary_key=True)
    team: str
    rule: str
    scope: str  # the run id, `w<window>` for a window of the team, or "" for a duplicates rule
    mark: str  # digest of the counted values
    at: float  # the database clock when it was counted


class Drill(SQLModel, table=True):
    """One recovery drill of a team (`guard drill`): its run and incident, the records it touched and its three times
    in seconds (None: the step was not reached; `detail` says why)."""

    __tablename__ = "drills"  # pyright: ignore[reportAssignmentType]
    __table_args__ = (Index("ix_drills_team", "team", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    team: str
    run_id: str | None = None
    incident_id: str | None = None
    state: str  # passed | failed
    drilled_by: str
    started_at: float
    pause_s: float | None = None  # from the bad run's first call to the pause in force
    radius_s: float | None = None  # from the pause to the blast radius found (incident opened, radius read)
    clean_s: float | None = None  # from the radius to clean state (wrong records repaired, the pause lifted)
    records: int = 0  # records the bad run changed
    detail: str  # JSON: the step that failed and why, systems touched, counts


class Restart(SQLModel, table=True):
    """A staged restart of a pause point (`guard.ledger.restarts`)."""

    __tablename__ = "restarts"  # pyright: ignore[reportAssignmentType]
    __table_args__ = (Index("ix_restarts_point", "scope", "target", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    scope: str  # team | tool | run
    team: str | None = None
    target: str
    stages: str  # JSON list of call counts, e.g. [1, 10, 100]
    stage: int  # index of the current stage
    passed: int  # calls the current stage let through
    state: str  # passing | holding | failed | done
    quiet: float | None = None  # seconds after a full stage with no failure that move it on without a confirmation
    held_at: float | None = None
    started_by: str
    reason: str
    at: float
    updated_at: float


class RestartCall(SQLModel, table=True):
    """A call a stage of a staged restart let through."""

    __tablename__ = "restart_calls"  # pyright: ignore[reportAssignmentType]

    call_id: str = Field(primary_key=True)
    restart_id: int
    stage: int


class ShadowCount(SQLModel, table=True):
    """How often a rule in `mode: shadow` would have decided otherwise (kind `rule` or `stop`)."""

    __tablename__ = "shadow_counts"  # pyright: ignore[reportAssignmentType]

    team: str = Field(primary_key=True)
    rule: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    verdicts: int


class ReviewerToken(SQLModel, table=True):
    """An API token of the approval service. Only the SHA-256 of its secret is stored; the secret is shown once.

    The token names a reviewer; what they may decide comes from the team policies (`reviewers:`), read when
    they act, so a policy change takes effect without new tokens. Revoked tokens stay, for the audit trail.
    """

    __tablename__ = "reviewer_tokens"  # pyright: ignore[reportAssignmentType]

    token_id: str = Field(primary_key=True)
    reviewer: str = Field(index=True)
    token_hash: str = Field(unique=True, index=True)  # sha256 hex of the secret; looked up on every request
    label: str | None = None
    created_by: str
    created_at: float
    revoked_at: float | None = None
    revoked_by: str | None = None


class EndedSession(SQLModel, table=True):
    """A reviewer page session signed out: its cookie (and every copy) is refused until it would have expired."""

    __tablename__ = "ended_sessions"  # pyright: ignore[reportAssignmentType]

    nonce: str = Field(primary_key=True)
    ended_at: float
    expires_at: float


class Notification(SQLModel, table=True):
    """A team's webhook told of one ledger event (a call waiting for approval, a run halted): what became of it."""

    __tablename__ = "notifications"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(unique=True, index=True)  # one notification per event, however many notifiers run
    team: str
    kind: str  # approval_waiting | run_halted | paused | stop_tripped
    run_id: str | None = Field(default=None, index=True)  # None: a team or tool pause, which belongs to no run
    call_id: str | None = None
    approval_id: str | None = None
    target: str  # the webhook's scheme://host only: a Slack webhook's path is a secret
    state: str  # sending | sent | failed | skipped
    attempts: int = 0
    last_error: str | None = None
    created_at: float
    updated_at: float


class NotifyCursor(SQLModel, table=True):
    """How far the notifier has read the events."""

    __tablename__ = "notify_cursor"  # pyright: ignore[reportAssignmentType]

    name: str = Field(primary_key=True)
    event_id: int


class SeenRequest(SQLModel, table=True):
    """A signed request the approval service accepted (a Slack interaction), kept until its timestamp is too old
    to be accepted again: a second insert of its key is a replay, on whichever replica it arrives."""

    __tablename__ = "seen_requests"  # pyright: ignore[reportAssignmentType]

    source: str = Field(primary_key=True)  # who signed it: `slack`
    signature: str = Field(primary_key=True)
    expires_at: float = Field(index=True)


from guard.ledger import incident_tables  # noqa: E402  # its tables join `metadata`

__all__ += ["incident_tables"]

metadata = SQLModel.metadata
