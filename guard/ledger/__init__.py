"""The durable ledger: runs, calls, events, approvals, manual actions. Knows nothing of policy or runtime."""

from guard.ledger.approvals import DecisionResult, EditGate, RolesNow
from guard.ledger.audit import AuditReport, Finding, Unsealed
from guard.ledger.database import HEAD_REVISION, current_revision, resolve_url, shown_url, sqlite_path, upgrade
from guard.ledger.drills import DrillRecord
from guard.ledger.field_stops import StopMark, shadow_verdicts
from guard.ledger.lease_clock import Beat, LeaseBeat
from guard.ledger.moves import RunClose
from guard.ledger.numbers import HealthNumbers, ToolNumbers, health_numbers
from guard.ledger.pauses import PausedAtSource, Scope
from guard.ledger.pool import PoolLimits
from guard.ledger.ports import (
    ApprovalsPort,
    CallPathLedger,
    CallsPort,
    NoticesPort,
    PausesPort,
    ReadsPort,
    ReviewersPort,
)
from guard.ledger.records import (
    ApprovalRecord,
    CallRecord,
    DecisionRecord,
    EventRecord,
    ManualActionRecord,
    NoticeEvent,
    NotificationRecord,
    RunRecord,
)
from guard.ledger.replay_facts import RecordedCall, recorded_calls
from guard.ledger.seals import SealFile, SealRecord, Signer, generate_key, load_public_key
from guard.ledger.signals import TICK, Watch, condition
from guard.ledger.states import OPEN_RUN_STATES, ApprovalState, CallState, IncidentState, NoticeState, RunState
from guard.ledger.store import CallRequest, Ledger, Offer, new_id
from guard.ledger.tokens import QueuedApproval

__all__ = [
    "HEAD_REVISION",
    "OPEN_RUN_STATES",
    "TICK",
    "ApprovalRecord",
    "ApprovalState",
    "ApprovalsPort",
    "AuditReport",
    "Beat",
    "CallPathLedger",
    "CallRecord",
    "CallRequest",
    "CallState",
    "CallsPort",
    "DecisionRecord",
    "DecisionResult",
    "DrillRecord",
    "EditGate",
    "EventRecord",
    "Finding",
    "HealthNumbers",
    "IncidentState",
    "LeaseBeat",
    "Ledger",
    "ManualActionRecord",
    "NoticeEvent",
    "NoticeState",
    "NoticesPort",
    "NotificationRecord",
    "Offer",
    "PausedAtSource",
    "PausesPort",
    "PoolLimits",
    "QueuedApproval",
    "ReadsPort",
    "RecordedCall",
    "ReviewersPort",
    "RolesNow",
    "RunClose",
    "RunRecord",
    "RunState",
    "Scope",
    "SealFile",
    "SealRecord",
    "Signer",
    "StopMark",
    "ToolNumbers",
    "Unsealed",
    "Watch",
    "condition",
    "current_revision",
    "generate_key",
    "health_numbers",
    "load_public_key",
    "new_id",
    "recorded_calls",
    "resolve_url",
    "shadow_verdicts",
    "shown_url",
    "sqlite_path",
    "upgrade",
]
