"""`PolicySet`: many teams in one process; a broken file denies its team and leaves the others served."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guard.errors import PolicyError
from guard.policy import PolicySet, Verdict

BILLING_TEXT = (Path(__file__).parent / "data" / "billing.yaml").read_text()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "billing.yaml").write_text(BILLING_TEXT)
    (tmp_path / "billing.cases.yaml").write_text("cases: [{tool: crm.search, expect: allow}]\n")
    (tmp_path / "broken.yaml").write_text("team: broken\nrules:\n  - name: x\n    tools: [a]\n    class: nope\n")
    (tmp_path / "notes.txt").write_text("not a policy")
    return tmp_path


def test_load_dir_keeps_good_and_broken_teams_apart(policy_dir: Path) -> None:
    policies = PolicySet.load_dir(policy_dir)
    assert policies.teams == ("billing", "broken")
    assert set(policies.policies) == {"billing"}
    assert set(policies.errors) == {"broken"}


def test_a_broken_team_is_denied_with_the_file_error(policy_dir: Path) -> None:
    decision = PolicySet.load_dir(policy_dir).classify("broken", "a", {})
    assert decision.verdict is Verdict.DENY
    assert f"{policy_dir / 'broken.yaml'}:5: rules[0].class" in decision.reason
    assert decision.policy_version == ""


def test_the_healthy_team_is_still_served(policy_dir: Path) -> None:
    assert PolicySet.load_dir(policy_dir).classify("billing", "crm.search", {}).verdict is Verdict.ALLOW


def test_an_unknown_team_is_denied_and_get_raises(policy_dir: Path) -> None:
    policies = PolicySet.load_dir(policy_dir)
    decision = policies.classify("growth", "crm.search", {})
    assert decision.verdict is Verdict.DENY and "no policy for team 'growth'" in decision.reason
    with pytest.raises(PolicyError, match="known teams: billing, broken"):
        policies.get("growth")
    with pytest.raises(PolicyError, match=re.escape("rules[0].class")):
        policies.get("broken")


def test_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot list the policy directory"):
        PolicySet.load_dir(tmp_path / "absent")
