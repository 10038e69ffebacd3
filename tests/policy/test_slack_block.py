"""Slack in a policy: each reviewer's Slack user id under `reviewers:`, and the team's Slack app under `slack:` (where
its signing secret is: the variable's name only)."""

from __future__ import annotations

import pytest

from guard import PolicyError
from guard.policy import policy_from_text, policy_json_schema

BASE = """\
team: desk
reviewers:
  alice: {roles: [finance], slack: U0ALICE01}
  sam: {roles: [support], slack: W0SAM0001}
  rita: [support]
rules:
  - name: reads
    tools: [crm.find]
    class: read
"""
APP = "slack:\n  signing_secret_env: DESK_SLACK_SECRET\n"


def test_reviewers_slack_ids_map_each_user_to_the_reviewer_and_the_secret_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`reviewers.<name>.slack` becomes Slack user id -> reviewer (a reviewer without one is not mapped), the roles
    are the reviewer's as in the short form, and the secret is read from its variable when asked."""
    policy = policy_from_text(BASE + APP, source="desk.yaml")
    assert policy.slack is not None
    assert dict(policy.slack.users) == {"U0ALICE01": "alice", "W0SAM0001": "sam"}
    assert dict(policy.reviewers) == {
        "alice": frozenset({"finance"}),
        "sam": frozenset({"support"}),
        "rita": frozenset({"support"}),
    }
    monkeypatch.delenv("DESK_SLACK_SECRET", raising=False)
    assert policy.slack.signing_secret() is None and policy.slack.bot_token() is None
    monkeypatch.setenv("DESK_SLACK_SECRET", "s3cret")
    assert policy.slack.signing_secret() == b"s3cret"


def test_slack_ids_without_a_slack_block_give_the_team_no_slack_app() -> None:
    """Ids alone decide nothing: without `slack:` the team has no Slack app."""
    assert policy_from_text(BASE, source="desk.yaml").slack is None


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (BASE.replace("W0SAM0001", "not-an-id") + APP, "desk.yaml:4: reviewers.sam.slack", "'not-an-id' is not a"),
        (BASE.replace("U0ALICE01", "u0alice01") + APP, "desk.yaml:3: reviewers.alice.slack", "not a Slack user id"),
        (BASE.replace("W0SAM0001", "U0ALICE01") + APP, "desk.yaml:4: reviewers.sam.slack", "already 'alice'"),
        (BASE.replace("slack: W0SAM0001", "slak: W0SAM0001") + APP, "desk.yaml:4: reviewers.sam.slak", "unknown key"),
        (
            BASE.replace("rita: [support]", "rita: support") + APP,
            "desk.yaml:5: reviewers.rita",
            "a list of their roles",
        ),
        (
            BASE.replace(", slack: U0ALICE01", "").replace(", slack: W0SAM0001", "") + APP,
            "desk.yaml:10: slack",
            "no reviewer has a Slack id",
        ),
    ],
    ids=["malformed", "lowercase", "twice", "misspelt-key", "not-roles", "nobody-mapped"],
)
def test_a_malformed_or_repeated_slack_id_is_refused_at_load_naming_file_line_and_field(
    text: str, where: str, reason: str
) -> None:
    """Malformed ids, one Slack user for two reviewers, unknown keys, a reviewer that is neither roles nor a mapping
    and a Slack app nobody is mapped to fail at load with file:line: field and the reason."""
    with pytest.raises(PolicyError) as err:
        policy_from_text(text, source="desk.yaml")
    assert str(err.value).startswith(where + ": ") and reason in str(err.value)


def test_the_former_slack_reviewers_map_is_refused_with_the_reviewers_lines_to_write_instead() -> None:
    """`slack.reviewers` (where ids lived before) is refused, and the message spells out the `reviewers:` entries
    carrying the same ids, which load as written."""
    old = (
        "team: desk\nreviewers:\n  alice: [finance]\n  sam: [support]\nrules:\n"
        "  - name: reads\n    tools: [crm.find]\n    class: read\n"
        "slack:\n  signing_secret_env: DESK_SLACK_SECRET\n  reviewers: {alice: U0ALICE01, sam: W0SAM0001}\n"
    )
    with pytest.raises(PolicyError) as err:
        policy_from_text(old, source="desk.yaml")
    message = str(err.value)
    assert message.startswith("desk.yaml:11: slack.reviewers: Slack user ids moved into `reviewers:`")
    rewrite = message.split("\n", 1)[1]
    assert rewrite == "  alice: {roles: [finance], slack: U0ALICE01}\n  sam: {roles: [support], slack: W0SAM0001}"
    fixed = "team: desk\nreviewers:\n" + rewrite + "\nrules:\n  - name: reads\n    tools: [crm.find]\n    class: read\n"
    policy = policy_from_text(fixed + APP, source="desk.yaml")
    assert policy.slack is not None and dict(policy.slack.users) == {"U0ALICE01": "alice", "W0SAM0001": "sam"}


def test_the_published_schema_offers_both_reviewer_forms_and_not_the_former_slack_map() -> None:
    """Editors see `reviewers` entries as a list of roles or {roles, slack}; `slack` has no `reviewers` key."""
    schema = policy_json_schema()
    defs = schema["$defs"]
    assert set(defs["ReviewerSpec"]["properties"]) == {"roles", "slack"}
    [entry] = schema["properties"]["reviewers"]["patternProperties"].values()
    short, full = entry["anyOf"]
    assert short["type"] == "array" and short["minItems"] == 1 and full == {"$ref": "#/$defs/ReviewerSpec"}
    assert "reviewers" not in defs["SlackSpec"]["properties"]


def test_the_signing_secret_itself_is_not_a_policy_field() -> None:
    """A policy cannot hold the secret: `signing_secret` is an unknown field."""
    with pytest.raises(PolicyError, match="signing_secret"):
        policy_from_text(BASE + "slack:\n  signing_secret: abc\n  signing_secret_env: X\n", source="desk.yaml")
