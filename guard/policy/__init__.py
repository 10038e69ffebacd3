# pyright: strict
"""Team policies: which side-effect class a tool call has, who must approve it, how it may retry.

Load a policy file with `load_policy`, or a whole directory with `PolicySet.load_dir`, then `classify`
each call. Loading validates everything and fails with a `PolicyError` naming file, line and field;
classifying is pure and fails closed (unknown tools, wrong-typed arguments and broken policies are denied).
"""

from guard.policy._cases import CaseReport, CaseResult, cases_path, run_cases
from guard.policy._field_stops import FieldStop
from guard.policy._live import LivePolicies
from guard.policy._load import load_policy, policy_from_text
from guard.policy._policy import Policy, RuleTrace
from guard.policy._schema import policy_json_schema
from guard.policy._set import PolicySet
from guard.policy._types import (
    ApprovalRule,
    Decision,
    Notify,
    OnFailure,
    Owners,
    RetryRule,
    SideEffectClass,
    Slack,
    StopRules,
    Verdict,
)
from guard.policy._values import parse_duration

__all__ = [
    "ApprovalRule",
    "CaseReport",
    "CaseResult",
    "Decision",
    "FieldStop",
    "LivePolicies",
    "Notify",
    "OnFailure",
    "Owners",
    "Policy",
    "PolicySet",
    "RetryRule",
    "RuleTrace",
    "SideEffectClass",
    "Slack",
    "StopRules",
    "Verdict",
    "cases_path",
    "load_policy",
    "parse_duration",
    "policy_from_text",
    "policy_json_schema",
    "run_cases",
]
