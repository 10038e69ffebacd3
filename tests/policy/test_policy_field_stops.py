"""Policy `stop.records`, `stop.duplicates`, `stop.blank_fields`: the seeds' stop rules as the policy compiles them."""

from __future__ import annotations

import pytest

from guard.errors import PolicyError
from guard.policy import policy_from_text


def test_stop_rules_on_named_arguments_compile_with_their_defaults_and_a_name_used_twice_is_refused_at_its_line() -> (
    None
):
    text = """\
team: t
reviewers: {olga: [ops]}
stop:
  records:
    - {name: many, tools: ["crm.*"], field: customer_id, max: 3, per: 10m, on_trip: pause}
  duplicates:
    - {name: dup, tools: [email.send], fields: [to], within: 10m}
  blank_fields:
    - {name: blank, tools: [crm.update], fields: [email], mode: shadow}
rules:
  - {name: r, tools: ["*"], class: read}
"""
    policy = policy_from_text(text, source="t")
    many, dup, blank = policy.stop.fields
    assert (many.kind, many.limit, many.window, many.on_trip, many.pause_scope) == (
        "records",
        3,
        600.0,
        "pause",
        "team",
    )
    assert (dup.kind, dup.limit, dup.window, dup.on_trip, dup.mode) == ("duplicates", 1, 600.0, "deny", "enforce")
    assert (blank.kind, blank.mode) == ("blanks", "shadow")
    assert [r.name for r in policy.classify("crm.update", {}).stop.fields] == ["many", "blank"]
    with pytest.raises(PolicyError) as refused:
        policy_from_text(text.replace("name: blank", "name: dup"), source="t")
    assert refused.value.line == 9 and "used twice" in refused.value.reason


SHADOWED = """\
team: t
reviewers: {fiona: [finance]}
rules:
  - {name: invoice, tools: [billing.create_invoice], class: compensable}
  - name: big-invoice-watch
    tools: [billing.create_invoice]
    when: {amount_cents: {gt: 50000}}
    class: compensable
    approval: {roles: [finance]}
    mode: shadow
"""


def test_a_shadow_rule_decides_nothing_and_the_decision_says_what_it_would_have_decided() -> None:
    policy = policy_from_text(SHADOWED, source="t")
    big = policy.classify("billing.create_invoice", {"amount_cents": 90000})
    assert (big.verdict, big.rule) == ("allow", "invoice")
    assert big.shadow is not None and big.shadow.startswith("approve, compensable, by rule big-invoice-watch")
    small = policy.classify("billing.create_invoice", {"amount_cents": 100})
    assert small.verdict == "allow" and small.shadow is None
    _, traces = policy.explain("billing.create_invoice", {"amount_cents": 90000})
    assert [t.outcome for t in traces] == ["matched", "shadow: would match"]
