"""The front door of guard.policy is pinned: others code against exactly these names."""

from __future__ import annotations

import guard.policy


def test_exported_names() -> None:
    assert sorted(guard.policy.__all__) == sorted(
        [
            "ApprovalRule",
            "CaseReport",
            "CaseResult",
            "Decision",
            "FieldStop",
            "parse_duration",
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
            "policy_from_text",
            "policy_json_schema",
            "run_cases",
        ]
    )
    for name in guard.policy.__all__:
        assert getattr(guard.policy, name).__module__.startswith("guard.policy")


def test_repeat_safe_classes() -> None:
    assert {c for c in guard.policy.SideEffectClass if c.repeat_safe} == {"read", "idempotent"}
