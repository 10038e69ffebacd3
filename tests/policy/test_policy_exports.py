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
    # Each is defined in the policy package, but the side-effect classes: the ledger records them too, and it may not
    # import the policy, so both take them from `guard.side_effects`.
    for name in guard.policy.__all__:
        home = "guard.side_effects" if name == "SideEffectClass" else "guard.policy"
        assert getattr(guard.policy, name).__module__.startswith(home)


def test_repeat_safe_classes() -> None:
    assert {c for c in guard.policy.SideEffectClass if c.repeat_safe} == {"read", "idempotent"}
