"""Guard: guardrail middleware for AI-agent tool calls.

Classify every tool call by side-effect class from a team's policy, record its life in a durable ledger,
hold high-impact calls for human approval, and fail closed. Start with `Guard`.

The errors are imported at once; every other name on first use (PEP 562 `__getattr__`), so that a
command such as `guard policy validate` loads the policy code alone, not the ledger's database stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from guard.errors import (
    ApprovalDecisionError,
    ApprovalExpired,
    ApprovalPending,
    ApprovalTimeout,
    ArgumentsRefused,
    CallDenied,
    CallFailed,
    CallInDoubt,
    CallOutcomeError,
    CallRejected,
    ConfigurationError,
    GuardError,
    GuardSignal,
    GuardUsageError,
    IdempotencyConflict,
    IllegalTransition,
    LeaseLost,
    LedgerBusy,
    LedgerError,
    LedgerNotReady,
    LedgerUnavailable,
    OutcomeUnknown,
    PolicyError,
    RunNotRunning,
    SecretKeyMissing,
    TeamPaused,
    ToolPaused,
)

if TYPE_CHECKING:
    from guard.canonical import args_hash
    from guard.ledger import CallState, Ledger, RunState
    from guard.policy import Decision, PolicySet, SideEffectClass, Verdict, load_policy
    from guard.runtime import (
        BridgedCall,
        CompensationKind,
        Found,
        FrameworkBridge,
        FrameworkTools,
        Guard,
        GuardedTool,
        NotFound,
        ReconcileContext,
        RecoveryReport,
        RollbackContext,
        RunHandle,
        current_call,
        current_run,
        report_external_id,
    )
    from guard.runtime.tracing import trace_context

_LAZY: dict[str, str] = {
    "BridgedCall": "guard.runtime",
    "CallState": "guard.ledger",
    "CompensationKind": "guard.runtime",
    "Decision": "guard.policy",
    "Found": "guard.runtime",
    "FrameworkBridge": "guard.runtime",
    "FrameworkTools": "guard.runtime",
    "Guard": "guard.runtime",
    "GuardedTool": "guard.runtime",
    "Ledger": "guard.ledger",
    "NotFound": "guard.runtime",
    "PolicySet": "guard.policy",
    "ReconcileContext": "guard.runtime",
    "RecoveryReport": "guard.runtime",
    "RollbackContext": "guard.runtime",
    "RunHandle": "guard.runtime",
    "RunState": "guard.ledger",
    "SideEffectClass": "guard.policy",
    "Verdict": "guard.policy",
    "args_hash": "guard.canonical",
    "current_call": "guard.runtime",
    "current_run": "guard.runtime",
    "load_policy": "guard.policy",
    "report_external_id": "guard.runtime",
    "trace_context": "guard.runtime.tracing",
}

__version__ = "0.1.0"

__all__ = [
    "ApprovalDecisionError",
    "ApprovalExpired",
    "ApprovalPending",
    "ApprovalTimeout",
    "ArgumentsRefused",
    "BridgedCall",
    "CallDenied",
    "CallFailed",
    "CallInDoubt",
    "CallOutcomeError",
    "CallRejected",
    "CallState",
    "CompensationKind",
    "ConfigurationError",
    "Decision",
    "Found",
    "FrameworkBridge",
    "FrameworkTools",
    "Guard",
    "GuardError",
    "GuardSignal",
    "GuardUsageError",
    "GuardedTool",
    "IdempotencyConflict",
    "IllegalTransition",
    "LeaseLost",
    "Ledger",
    "LedgerBusy",
    "LedgerError",
    "LedgerNotReady",
    "LedgerUnavailable",
    "NotFound",
    "OutcomeUnknown",
    "PolicyError",
    "PolicySet",
    "ReconcileContext",
    "RecoveryReport",
    "RollbackContext",
    "RunHandle",
    "RunNotRunning",
    "RunState",
    "SecretKeyMissing",
    "SideEffectClass",
    "TeamPaused",
    "ToolPaused",
    "Verdict",
    "__version__",
    "args_hash",
    "current_call",
    "current_run",
    "load_policy",
    "report_external_id",
    "trace_context",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and keep the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
