"""Guard: guardrail middleware for AI-agent tool calls.

Classify every tool call by side-effect class from a team's policy, record its life in a durable ledger,
hold high-impact calls for human approval, and fail closed. Start with `Guard`.
"""

from guard.canonical import args_hash
from guard.errors import (
    ApprovalDecisionError,
    ApprovalExpired,
    ApprovalPending,
    ApprovalTimeout,
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
    LedgerError,
    LedgerNotReady,
    LedgerUnavailable,
    PolicyError,
    RunNotRunning,
)
from guard.ledger import CallState, Ledger, RunState
from guard.policy import Decision, PolicySet, SideEffectClass, Verdict, load_policy
from guard.runtime import Guard, GuardedTool, RunHandle, current_call, current_run, report_external_id

__version__ = "0.1.0"

__all__ = [
    "ApprovalDecisionError",
    "ApprovalExpired",
    "ApprovalPending",
    "ApprovalTimeout",
    "CallDenied",
    "CallFailed",
    "CallInDoubt",
    "CallOutcomeError",
    "CallRejected",
    "CallState",
    "ConfigurationError",
    "Decision",
    "Guard",
    "GuardError",
    "GuardSignal",
    "GuardUsageError",
    "GuardedTool",
    "IdempotencyConflict",
    "IllegalTransition",
    "Ledger",
    "LedgerError",
    "LedgerNotReady",
    "LedgerUnavailable",
    "PolicyError",
    "PolicySet",
    "RunHandle",
    "RunNotRunning",
    "RunState",
    "SideEffectClass",
    "Verdict",
    "__version__",
    "args_hash",
    "current_call",
    "current_run",
    "load_policy",
    "report_external_id",
]
