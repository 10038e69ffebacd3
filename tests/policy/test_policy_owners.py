"""Policy `owners:`: who answers for a team's pauses and, where it differs, a rule's; who may pause alone."""

from __future__ import annotations

from guard.policy import policy_from_text

POLICY = """\
team: billing
reviewers:
  alice: [finance]
  bob: [finance, billing-leads]
  olga: [operator]
  rita: [support]
owners:
  owner: alice
  backup: billing-leads
rules:
  - name: reads
    tools: [crm.get]
    class: read
  - name: charges
    tools: ["billing.charge*"]
    class: idempotent
    owners:
      owner: rita
      backup: operator
"""


def test_the_team_owners_answer_for_a_team_pause_and_for_tools_whose_rule_names_none() -> None:
    policy = policy_from_text(POLICY, source="billing.yaml")
    assert policy.owners is not None and policy.owners.names == ("alice", "billing-leads")
    assert policy.owners_of() == (policy.owners,)
    assert policy.owners_of("crm.get") == (policy.owners,)


def test_a_rule_with_its_own_owners_answers_for_the_tools_it_names_by_name_or_by_its_glob() -> None:
    policy = policy_from_text(POLICY, source="billing.yaml")
    assert [o.names for o in policy.owners_of("billing.charge_card")] == [("rita", "operator")]
    assert [o.names for o in policy.owners_of("billing.charge*")] == [("rita", "operator")]


def test_owners_by_name_or_role_and_operators_may_pause_others_may_not() -> None:
    policy = policy_from_text(POLICY, source="billing.yaml")
    assert policy.may_pause("Alice")  # the owner, named as the person
    assert policy.may_pause("bob")  # the backup is a role bob holds
    assert policy.may_pause("olga", "crm.get")  # operator
    assert not policy.may_pause("rita")  # a rule owner does not own the team
    assert policy.may_pause("rita", "billing.charge_card")  # ...but owns that rule's tools
    assert not policy.may_pause("rita", "crm.get")
    assert not policy.may_pause("mallory")  # not a reviewer of the team at all


def test_a_policy_without_owners_leaves_pausing_to_operators() -> None:
    policy = policy_from_text(
        "team: t\nreviewers:\n  olga: [operator]\n  al: [finance]\nrules:\n  - {name: r, tools: [x], class: read}\n",
        source="t.yaml",
    )
    assert policy.owners is None and policy.owners_of("x") == ()
    assert policy.may_pause("olga") and not policy.may_pause("al")
