"""Policy `slack:`: which Slack user is which reviewer, and where the signing secret is (its variable's name only)."""

from __future__ import annotations

import pytest

from guard import PolicyError
from guard.policy import policy_from_text

BASE = """\
team: desk
reviewers:
  alice: [finance]
  sam: [support]
rules:
  - name: reads
    tools: [crm.find]
    class: read
"""


def test_slack_maps_each_user_id_to_the_reviewer_and_reads_the_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`slack.reviewers` becomes Slack user id -> reviewer; the secret is read from its variable when asked."""
    policy = policy_from_text(
        BASE + "slack:\n  signing_secret_env: DESK_SLACK_SECRET\n  reviewers: {alice: U0ALICE01, sam: W0SAM0001}\n",
        source="desk.yaml",
    )
    assert policy.slack is not None
    assert dict(policy.slack.users) == {"U0ALICE01": "alice", "W0SAM0001": "sam"}
    monkeypatch.delenv("DESK_SLACK_SECRET", raising=False)
    assert policy.slack.signing_secret() is None and policy.slack.bot_token() is None
    monkeypatch.setenv("DESK_SLACK_SECRET", "s3cret")
    assert policy.slack.signing_secret() == b"s3cret"


@pytest.mark.parametrize(
    ("block", "field", "reason"),
    [
        ("  reviewers: {mallory: U0MAL0001}\n", "slack.reviewers.mallory", "not a reviewer of this team"),
        ("  reviewers: {alice: U0ALICE01, sam: U0ALICE01}\n", "slack.reviewers.sam", "already 'alice'"),
        ("  reviewers: {alice: not-an-id}\n", "slack.reviewers.alice", ""),
        ("  reviewers: {}\n", "slack.reviewers", ""),
    ],
)
def test_a_slack_block_that_names_no_reviewer_or_a_user_twice_is_refused_at_load(
    block: str, field: str, reason: str
) -> None:
    """Unknown reviewers, one Slack user for two reviewers, malformed ids and an empty map fail at load with
    file:line: field."""
    with pytest.raises(PolicyError) as err:
        policy_from_text(BASE + "slack:\n  signing_secret_env: DESK_SLACK_SECRET\n" + block, source="desk.yaml")
    assert f": {field}" in str(err.value) and reason in str(err.value) and "desk.yaml:" in str(err.value)


def test_the_signing_secret_itself_is_not_a_policy_field() -> None:
    """A policy cannot hold the secret: `signing_secret` is an unknown field."""
    with pytest.raises(PolicyError, match="signing_secret"):
        policy_from_text(
            BASE + "slack:\n  signing_secret: abc\n  signing_secret_env: X\n  reviewers: {alice: U0ALICE01}\n",
            source="desk.yaml",
        )
