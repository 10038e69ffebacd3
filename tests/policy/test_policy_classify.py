"""`Policy.classify`: fail closed, deny overrides, the strictest rule wins, wrong types never auto-allow."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.policy import (
    ApprovalRule,
    OnFailure,
    Policy,
    SideEffectClass,
    Verdict,
    policy_from_text,
)

BILLING_TEXT = (Path(__file__).parent / "data" / "billing.yaml").read_text()

INVOICE = "billing.create_invoice"


@pytest.mark.parametrize(
    "args",
    [
        {"amount_cents": "60000"},
        {"amount_cents": [60000]},
        {"amount_cents": {"v": 60000}},
        {"amount_cents": True},
        {"amount_cents": None},
        {"amount_cents": math.nan},
        {"amount_cents": math.inf},
        {},
    ],
    ids=["string", "list", "object", "bool", "null", "nan", "inf", "missing"],
)
def test_type_confused_amount_is_denied_never_allowed(billing: Policy, args: dict[str, Any]) -> None:
    decision = billing.classify(INVOICE, args)
    assert decision.verdict is Verdict.DENY
    assert "amount_cents" in decision.reason and "big-invoice" in decision.reason


def test_deny_reason_names_the_json_type_and_the_expectation(billing: Policy) -> None:
    reason = billing.classify(INVOICE, {"amount_cents": "60000"}).reason
    assert "argument amount_cents is a string; rule big-invoice compares it as a number" in reason
    assert "send a number" in reason


@pytest.mark.parametrize("raw", ['{"amount_cents": 6e4}', '{"amount_cents": 60000.0}', '{"amount_cents": 60000}'])
def test_json_numbers_compare_numerically(billing: Policy, raw: str) -> None:
    decision = billing.classify(INVOICE, json.loads(raw))
    assert decision.verdict is Verdict.APPROVE
    assert decision.rule == "big-invoice"
    assert decision.approval == ApprovalRule(roles=("finance",), quorum=1, expires_after=1800.0)


def test_small_invoice_is_allowed_by_the_broader_rule(billing: Policy) -> None:
    decision = billing.classify(INVOICE, {"amount_cents": 100})
    assert (decision.verdict, decision.rule, decision.side_effect) == (
        Verdict.ALLOW,
        "invoice",
        SideEffectClass.COMPENSABLE,
    )
    assert decision.matched == ("invoice",)
    assert decision.approval is None


def test_unknown_tool_is_denied_naming_the_policy_file(billing: Policy) -> None:
    decision = billing.classify("billing.refund", {})
    assert decision.verdict is Verdict.DENY
    assert decision.side_effect is None and decision.rule is None
    assert "no rule in policies/billing.yaml matches tool billing.refund" in decision.reason


def test_a_deny_rule_overrides_every_other_match() -> None:
    policy = policy_from_text(
        BILLING_TEXT.replace('tools: ["crm.get_*", crm.search]', 'tools: ["crm.*"]'),
        source="policies/billing.yaml",
    )
    decision = policy.classify("crm.delete_contact", {})
    assert decision.verdict is Verdict.DENY
    assert decision.rule == "no-deletes"
    assert decision.reason.startswith("deletes are done by hand in the admin console (rule no-deletes)")
    assert decision.side_effect is SideEffectClass.READ
    assert set(decision.matched) == {"crm-reads", "no-deletes"}


def test_irreversible_call_needs_a_quorum_of_two(billing: Policy) -> None:
    decision = billing.classify("billing.charge_card", {"card_number": "4242", "cvv": "123"})
    assert decision.verdict is Verdict.APPROVE
    assert decision.approval == ApprovalRule(roles=("finance",), quorum=2, expires_after=3600.0)
    assert decision.on_failure is OnFailure.HALT
    assert decision.retry.attempts == 1
    assert decision.secret_fields == {"card_number", "cvv"}


def test_read_rule_carries_its_retry_and_class_defaults(billing: Policy) -> None:
    decision = billing.classify("crm.get_contact", {})
    assert decision.verdict is Verdict.ALLOW
    assert (decision.retry.attempts, decision.retry.timeout) == (3, 5.0)
    assert decision.on_failure is OnFailure.CONTINUE
    assert decision.secret_fields == {"card_number"}
    assert decision.policy_version == billing.version


def test_globs_are_case_sensitive(billing: Policy) -> None:
    assert billing.classify("CRM.get_contact", {}).verdict is Verdict.DENY


def test_reviewer_roles(billing: Policy) -> None:
    assert billing.roles_of("bob") == {"finance", "ops"}
    assert billing.roles_of("mallory") == frozenset()


@given(st.permutations(range(5)))
def test_strictest_rule_wins_whatever_the_file_order(order: list[int]) -> None:
    head, rules = BILLING_TEXT.split("rules:\n")
    chunks = ["  - " + chunk for chunk in rules.split("  - ")[1:]]
    policy = policy_from_text(head + "rules:\n" + "".join(chunks[i] for i in order), source="policies/billing.yaml")
    for tool, args, verdict, rule in [
        (INVOICE, {"amount_cents": 60000}, Verdict.APPROVE, "big-invoice"),
        (INVOICE, {"amount_cents": 100}, Verdict.ALLOW, "invoice"),
        (INVOICE, {"amount_cents": "60000"}, Verdict.DENY, "big-invoice"),
        ("crm.delete_contact", {}, Verdict.DENY, "no-deletes"),
        ("billing.charge_card", {}, Verdict.APPROVE, "charge"),
    ]:
        decision = policy.classify(tool, args)
        assert (decision.verdict, decision.rule) == (verdict, rule)


CONDITIONS = """\
team: conditions
rules:
  - name: eu
    tools: [ship]
    when:
      customer.country: {in: [DE, FR]}
      weight: {gte: 1, lt: 100}
    class: compensable
  - name: glob
    tools: [tag]
    when: {label: {glob: "vip-*"}, note: {exists: false}}
    class: idempotent
  - name: flag
    tools: [flag]
    when: {enabled: {eq: true}, level: {exists: true, ne: 3}}
    class: read
"""


@pytest.fixture(scope="module")
def conditions() -> Policy:
    return policy_from_text(CONDITIONS, source="<conditions>")


@pytest.mark.parametrize(
    ("tool", "args", "verdict"),
    [
        ("ship", {"customer": {"country": "DE"}, "weight": 5}, Verdict.ALLOW),
        ("ship", {"customer": {"country": "US"}, "weight": 5}, Verdict.DENY),  # determinately no match
        ("ship", {"customer": {"country": "US"}, "weight": "heavy"}, Verdict.DENY),
        ("ship", {"customer": "DE", "weight": 5}, Verdict.DENY),
        ("ship", {"customer": {"country": 49}, "weight": 5}, Verdict.DENY),
        ("tag", {"label": "vip-gold"}, Verdict.ALLOW),
        ("tag", {"label": "vip-gold", "note": "x"}, Verdict.DENY),
        ("tag", {"label": 7}, Verdict.DENY),
        ("flag", {"enabled": True, "level": 2}, Verdict.ALLOW),
        ("flag", {"enabled": True}, Verdict.DENY),  # exists: true on a missing field is a plain no-match
        ("flag", {"enabled": 1, "level": 2}, Verdict.DENY),
    ],
)
def test_conditions(conditions: Policy, tool: str, args: dict[str, Any], verdict: Verdict) -> None:
    assert conditions.classify(tool, args).verdict is verdict


def test_a_path_through_a_non_object_names_the_object(conditions: Policy) -> None:
    reason = conditions.classify("ship", {"customer": "DE", "weight": 5}).reason
    assert "argument customer is a string" in reason and "send an object" in reason


def test_no_match_with_conditions_says_which_conditions_failed(conditions: Policy) -> None:
    reason = conditions.classify("flag", {"enabled": False, "level": 1}).reason
    assert "with these arguments" in reason and "flag (enabled eq True and level exists true and ne 3)" in reason


def test_repeated_calls_return_the_same_cached_decision(billing: Policy) -> None:
    first = billing.classify(INVOICE, {"amount_cents": 100})
    assert billing.classify(INVOICE, {"amount_cents": 100}) is first
    assert billing.classify("crm.search", {}) is billing.classify("crm.search", {"q": "x"})


def test_explain_traces_every_rule(billing: Policy) -> None:
    decision, traces = billing.explain(INVOICE, {"amount_cents": "1"})
    assert decision.verdict is Verdict.DENY
    outcomes = {trace.rule: trace.outcome for trace in traces}
    assert outcomes == {
        "crm-reads": "tool not named",
        "big-invoice": "indeterminate",
        "invoice": "matched",
        "charge": "tool not named",
        "no-deletes": "tool not named",
    }
