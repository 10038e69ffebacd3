"""The durable ledger: runs, calls, events, approvals, manual actions. Knows nothing of policy or runtime."""

from guard.ledger.approvals import DecisionResult, EditGate, RolesNow
from guard.ledger.audit import AuditReport, Finding, Unsealed
from guard.ledger.database import HEAD_REVISION, current_revision, resolve_url, sqlite_path, upgrade
from guard.ledger.moves import RunClose
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
from guard.ledger.states import ApprovalState, CallState, RunState
from guard.ledger.store import CallRequest, Ledger, Offer, new_id

__all__ = [
    "HEAD_REVISION",
    "ApprovalRecord",
    "ApprovalState",
    "AuditReport",
    "CallRecord",
    "CallRequest",
    "CallState",
    "DecisionRecord",
    "DecisionResult",
    "EditGate",
    "EventRecord",
    "Finding",
    "Ledger",
    "ManualActionRecord",
    "NoticeEvent",
    "NotificationRecord",
    "Offer",
    "RolesNow",
    "RunClose",
    "RunRecord",
    "RunState",
    "Unsealed",
    "current_revision",
    "new_id",
    "resolve_url",
    "sqlite_path",
    "upgrade",
]
