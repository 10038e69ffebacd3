"""The durable ledger: runs, calls, events, approvals, manual actions. Knows nothing of policy or runtime."""

from guard.ledger.approvals import DecisionResult, EditGate, RolesNow
from guard.ledger.chain import ChainReport
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
    "CallRecord",
    "CallRequest",
    "CallState",
    "ChainReport",
    "DecisionRecord",
    "DecisionResult",
    "EditGate",
    "EventRecord",
    "Ledger",
    "ManualActionRecord",
    "NoticeEvent",
    "NotificationRecord",
    "Offer",
    "RolesNow",
    "RunClose",
    "RunRecord",
    "RunState",
    "current_revision",
    "new_id",
    "resolve_url",
    "sqlite_path",
    "upgrade",
]
