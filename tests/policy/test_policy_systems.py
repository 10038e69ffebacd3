"""Policy `systems:`: the timeout and retries one system's tools share, conflicts refused at load with file, line
and field, and `guard policy explain` saying where each value came from."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from guard.cli.policy_cmd import app
from guard.errors import PolicyError
from guard.policy import Policy, policy_from_text
from guard.policy._systems import globs_meet

SHOP = """\
team: shop
reviewers: {alice: [finance]}
defaults:
  retry: {backoff: {initial: 50ms, max: 1s}}
systems:
  billing:
    tools: ["billing.*"]
    timeout: 10s
    retry: {attempts: 4, backoff: {initial: 200ms, max: 5s, multiplier: 3}}
  crm:
    tools: ["crm.*"]
    timeout: 3s
rules:
  - name: invoice
    tools: [billing.create_invoice]
    class: compensable
  - name: billing-reads
    tools: ["billing.get_*"]
    class: read
  - name: billing-upserts
    tools: [billing.upsert_customer]
    class: idempotent
  - name: crm-reads
    tools: ["crm.get_*"]
    class: read
    retry: {attempts: 2}
  - name: email
    tools: [email.send]
    class: irreversible
    approval: {roles: [finance]}
    retry: {timeout: 30s}
"""


def shop() -> Policy:
    return policy_from_text(SHOP, source="policies/shop.yaml")


def test_every_tool_of_a_system_gets_its_timeout_and_backoff_whichever_rule_decides() -> None:
    policy = shop()
    invoice = policy.classify("billing.create_invoice", {}).retry
    read = policy.classify("billing.get_invoice", {}).retry
    upsert = policy.classify("billing.upsert_customer", {}).retry
    for retry in (invoice, read, upsert):
        assert (retry.timeout, retry.backoff_initial, retry.backoff_max, retry.backoff_multiplier) == (
            10.0,
            0.2,
            5.0,
            3.0,
        )
    # attempts count for the repeat-safe classes only: a compensable write is never retried
    assert (read.attempts, upsert.attempts, invoice.attempts) == (4, 4, 1)


def test_what_a_system_leaves_unset_comes_from_the_rule_then_the_defaults() -> None:
    retry = shop().classify("crm.get_contact", {}).retry
    assert (retry.timeout, retry.attempts, retry.backoff_initial, retry.backoff_max) == (3.0, 2, 0.05, 1.0)


def test_a_tool_of_no_system_keeps_its_rules_values_and_system_of_says_none() -> None:
    policy = shop()
    assert policy.classify("email.send", {}).retry.timeout == 30.0
    assert (policy.system_of("email.send"), policy.system_of("billing.void"), policy.system_of("crm.get_x")) == (
        None,
        "billing",
        "crm",
    )


def test_a_rule_setting_another_timeout_than_its_system_is_refused_naming_file_line_and_field() -> None:
    text = SHOP.replace("    retry: {attempts: 2}\n", "    retry: {attempts: 2, timeout: 5s}\n")
    with pytest.raises(PolicyError) as refused:
        policy_from_text(text, source="policies/shop.yaml")
    err = refused.value.fields
    assert (err["file"], err["line"], err["field"]) == ("policies/shop.yaml", 26, "rules[3].retry.timeout")
    assert "system crm (line 12) sets to 3s" in err["reason"]


def test_a_glob_rule_that_could_name_a_tool_of_the_system_conflicts_too() -> None:
    text = SHOP + "  - name: all-reads\n    tools: ['*.list_*']\n    class: read\n    retry: {attempts: 5}\n"
    with pytest.raises(PolicyError) as refused:
        policy_from_text(text, source="policies/shop.yaml")
    assert refused.value.fields["field"] == "rules[5].retry.attempts"
    assert "'*.list_*'" in refused.value.fields["reason"] and "system billing" in refused.value.fields["reason"]


def test_a_rule_repeating_its_systems_value_or_a_compensable_rule_saying_one_attempt_is_accepted() -> None:
    text = SHOP.replace(
        "    tools: [billing.create_invoice]\n    class: compensable\n",
        "    tools: [billing.create_invoice]\n    class: compensable\n    retry: {attempts: 1, timeout: 10s}\n",
    )
    assert (
        policy_from_text(text, source="policies/shop.yaml").classify("billing.create_invoice", {}).retry.timeout == 10
    )


def test_two_systems_that_could_hold_one_tool_are_refused() -> None:
    text = SHOP.replace('    tools: ["crm.*"]', '    tools: ["crm.*", "billing.refund_*"]')
    with pytest.raises(PolicyError) as refused:
        policy_from_text(text, source="policies/shop.yaml")
    assert refused.value.fields["field"] == "systems.crm.tools"
    assert "'billing.refund_*' and 'billing.*' of system billing" in refused.value.fields["reason"]


def test_a_timeout_under_a_systems_retry_is_refused_with_where_it_goes() -> None:
    text = SHOP.replace("    timeout: 3s\n", "    retry: {timeout: 3s}\n")
    with pytest.raises(PolicyError) as refused:
        policy_from_text(text, source="policies/shop.yaml")
    assert refused.value.fields["field"] == "systems.crm.retry.timeout"


def test_explain_says_where_each_value_came_from(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(SHOP)
    runner = CliRunner()
    crm = runner.invoke(app, ["explain", "crm.get_contact", "--team", "shop", "--policies", str(tmp_path)])
    assert crm.exit_code == 0, crm.output
    assert "system: crm" in crm.output
    assert (
        "retry from: attempts rule crm-reads (line 26); backoff defaults (line 4); timeout system crm (line 12)"
        in crm.output
    )
    invoice = runner.invoke(
        app, ["explain", "billing.create_invoice", "--team", "shop", "--json", "--policies", str(tmp_path)]
    )
    data = json.loads(invoice.output)
    assert data["system"] == "billing"
    assert data["retry_from"] == {
        "attempts": "class compensable: never retried (system billing (line 9) counts for repeat-safe classes)",
        "backoff": "system billing (line 9)",
        "timeout": "system billing (line 8)",
    }
    email = runner.invoke(app, ["explain", "email.send", "--team", "shop", "--json", "--policies", str(tmp_path)])
    assert json.loads(email.output)["retry_from"] == {
        "attempts": "built in (class irreversible)",
        "backoff": "defaults (line 4)",
        "timeout": "rule email (line 31)",
    }


_GLOB = st.text(alphabet="ab.*?", min_size=0, max_size=6)


@settings(max_examples=300, deadline=None)
@given(_GLOB, _GLOB, st.text(alphabet="ab.", max_size=8))
def test_two_globs_matching_one_name_always_meet(a: str, b: str, name: str) -> None:
    if fnmatchcase(name, a) and fnmatchcase(name, b):
        assert globs_meet(a, b)


def test_globs_that_cannot_match_one_name_do_not_meet() -> None:
    assert not globs_meet("billing.*", "crm.*")
    assert not globs_meet("crm.get_?", "crm.get_ab")
    assert not globs_meet("[ab]x", "[!ab]x")
    assert globs_meet("*.get_*", "billing.*") and globs_meet("[a-c]*", "b*z")


def test_the_blast_radius_groups_a_tool_under_the_system_its_policy_names_else_its_prefix() -> None:
    from guard.incidents.radius import system_of

    policy = policy_from_text(
        SHOP.replace('    tools: ["billing.*"]', '    tools: ["billing.*", "stripe.*"]'), source="policies/shop.yaml"
    )
    assert [system_of(tool, policy) for tool in ("stripe.charge", "crm.get_x", "email.send")] == [
        "billing",
        "crm",
        "email",
    ]
