"""The guarded call path, as the agent sees it."""

from guard.runtime.bridge import BridgedCall, FrameworkBridge, FrameworkTools
from guard.runtime.context import current_call, current_run, report_external_id
from guard.runtime.guard import Guard
from guard.runtime.hooks import (
    CompensationKind,
    Found,
    NotFound,
    ReconcileContext,
    RollbackContext,
)
from guard.runtime.recovery import RecoveryReport
from guard.runtime.runs import RunHandle
from guard.runtime.tools import GuardedTool

__all__ = [
    "BridgedCall",
    "CompensationKind",
    "Found",
    "FrameworkBridge",
    "FrameworkTools",
    "Guard",
    "GuardedTool",
    "NotFound",
    "ReconcileContext",
    "RecoveryReport",
    "RollbackContext",
    "RunHandle",
    "current_call",
    "current_run",
    "report_external_id",
]
