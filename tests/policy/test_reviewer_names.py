"""One reviewer name is one person: names are compared after Unicode NFKC, case folding and trimming, and a
policy set where two spellings of one name are declared apart is refused at load with `file:line: field`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guard.errors import PolicyError
from guard.identity import identity, same_person
from guard.policy import PolicySet, policy_from_text

RULES = "rules:\n  - name: reads\n    tools: [crm.get]\n    class: read\n"


@pytest.mark.parametrize(
    ("a", "b"),
    [("Agent-Bob ", "agent-bob"), ("ALICE", "alice"), ("ａｌｉｃｅ", "alice"), ("\tsam\n", "Sam")],  # noqa: RUF001
)
def test_spellings_of_one_name_are_one_person(a: str, b: str) -> None:
    assert identity(a) == identity(b) and same_person(a, b)


def test_different_names_and_a_missing_name_are_never_the_same_person() -> None:
    assert not same_person("alice", "alicia")
    assert not same_person("alice", None) and not same_person(None, None)


def test_a_reviewer_holds_their_roles_under_any_spelling_of_their_name() -> None:
    policy = policy_from_text(f"team: pay\nreviewers:\n  Alice: [finance]\n{RULES}", source="pay.yaml")
    assert policy.roles_of(" alice") == policy.roles_of("ALICE") == frozenset({"finance"})
    assert policy.roles_of("alicia") == frozenset()


def test_two_spellings_of_one_reviewer_in_one_file_are_refused_with_file_line_and_field() -> None:
    text = f"team: pay\nreviewers:\n  Alice: [finance]\n  bob: [finance]\n  alice: [support]\n{RULES}"
    with pytest.raises(PolicyError) as refused:
        policy_from_text(text, source="pay.yaml")
    assert re.match(
        r"pay\.yaml:5: reviewers\.alice: reviewer 'alice' and reviewer 'Alice' are the same name", str(refused.value)
    ), str(refused.value)


def test_a_reviewer_spelled_two_ways_in_two_teams_leaves_the_second_team_refused(tmp_path: Path) -> None:
    (tmp_path / "billing.yaml").write_text(f"team: billing\nreviewers:\n  Alice: [finance]\n{RULES}")
    (tmp_path / "support.yaml").write_text(f"team: support\nreviewers:\n  sam: [support]\n  alice: [support]\n{RULES}")
    policies = PolicySet.load_dir(tmp_path)
    assert list(policies.policies) == ["billing"]
    error = policies.errors["support"]
    assert str(error).startswith(f"{tmp_path / 'support.yaml'}:4: reviewers.alice: ")
    assert "billing.yaml names this reviewer 'Alice'" in str(error)
    assert policies.classify("support", "crm.get", {}).verdict.value == "deny"  # the refused team fails closed


def test_one_reviewer_spelled_alike_in_every_team_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "billing.yaml").write_text(f"team: billing\nreviewers:\n  alice: [finance]\n{RULES}")
    (tmp_path / "support.yaml").write_text(f"team: support\nreviewers:\n  alice: [support]\n{RULES}")
    policies = PolicySet.load_dir(tmp_path)
    assert policies.errors == {} and policies.get("support").roles_of("Alice") == frozenset({"support"})


APP = "slack:\n  signing_secret_env: TEAM_SLACK_SECRET\n"


def test_one_slack_user_given_to_two_reviewer_names_in_two_teams_leaves_the_second_team_refused(
    tmp_path: Path,
) -> None:
    """A Slack click acts as the name the approval's team gives its user: one Slack user named sam in billing and
    bob in support would be two reviewers (approving what the other asked, acting for a team sam is not in). The
    set refuses the later file, naming both files, lines and names and what to write."""
    (tmp_path / "billing.yaml").write_text(
        f"team: billing\nreviewers:\n  sam: {{roles: [finance], slack: U024BE7LH}}\n{APP}{RULES}"
    )
    (tmp_path / "support.yaml").write_text(
        f"team: support\nreviewers:\n  rita: [support]\n  bob: {{roles: [support], slack: U024BE7LH}}\n{APP}{RULES}"
    )
    policies = PolicySet.load_dir(tmp_path)
    assert list(policies.policies) == ["billing"]
    error = str(policies.errors["support"])
    assert error.startswith(f"{tmp_path / 'support.yaml'}:4: reviewers.bob.slack: Slack user U024BE7LH is 'bob' here")
    assert f"{tmp_path / 'billing.yaml'}:3 gives it to reviewer 'sam'" in error
    assert "give each person one Slack id" in error
    assert policies.classify("support", "crm.get", {}).verdict.value == "deny"  # the refused team fails closed


def test_one_slack_user_under_one_reviewer_name_in_every_team_is_accepted(tmp_path: Path) -> None:
    """The same person reviewing for two teams keeps one Slack id under one name."""
    (tmp_path / "billing.yaml").write_text(
        f"team: billing\nreviewers:\n  sam: {{roles: [finance], slack: U024BE7LH}}\n{APP}{RULES}"
    )
    (tmp_path / "support.yaml").write_text(
        f"team: support\nreviewers:\n  sam: {{roles: [support], slack: U024BE7LH}}\n{APP}{RULES}"
    )
    policies = PolicySet.load_dir(tmp_path)
    assert policies.errors == {}
    assert policies.get("support").slack is not None
