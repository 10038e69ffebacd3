"""The running service follows edits of the policy files: reviewers gained or lost take effect without a restart.

The app is made with `policies_every=0` (it looks at the files on every request), so no test waits for a clock.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_support import POLICIES, Service

from guard.policy import LivePolicies

pytestmark = pytest.mark.anyio


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    return folder


@pytest.fixture
def service_policies(policy_dir: Path) -> Path:
    return policy_dir


@pytest.fixture
def service_options() -> dict[str, Any]:
    return {"notify_every": None, "policies_every": 0}


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://testserver") as c:
        yield c


def edit(policy_dir: Path, old: str, new: str) -> None:
    file = policy_dir / "onboarding.yaml"
    text = file.read_text()
    assert old in text, f"{old!r} is not in onboarding.yaml any more: update this test"
    file.write_text(text.replace(old, new, 1))


async def approve(http: httpx.AsyncClient, service: Service, who: str, approval_id: str) -> httpx.Response:
    record = service.ledger.get_approval(approval_id)
    assert record is not None
    return await http.post(
        f"/api/approvals/{approval_id}/decision",
        headers=service.auth(who),
        json={"decision": "approve", "args_hash": record.args_hash},
    )


async def test_a_reviewer_added_to_the_file_may_decide_at_once(
    service: Service, http: httpx.AsyncClient, policy_dir: Path
) -> None:
    approval_id = service.waiting()
    refused = await approve(http, service, "newcomer", approval_id)
    assert refused.status_code == 404, refused.text  # not a reviewer of the team yet: as if the id were unknown

    edit(policy_dir, "  sam: [support]\n", "  sam: [support]\n  newcomer: [support]\n")
    queue = await http.get("/api/approvals", headers=service.auth("newcomer"))
    assert [a["approval_id"] for a in queue.json()] == [approval_id]
    decided = await approve(http, service, "newcomer", approval_id)
    assert decided.status_code == 200, decided.text
    after = service.ledger.get_approval(approval_id)
    assert after is not None and after.state == "approved"
    assert [d.reviewer for d in service.ledger.decisions_of(approval_id)] == ["newcomer"]


async def test_a_reviewer_taken_off_the_file_loses_authority_at_once(
    service: Service, http: httpx.AsyncClient, policy_dir: Path
) -> None:
    approval_id = service.waiting()
    assert (await http.get(f"/api/approvals/{approval_id}", headers=service.auth("sam"))).status_code == 200

    edit(policy_dir, "  sam: [support]\n", "")
    refused = await approve(http, service, "sam", approval_id)
    assert refused.status_code == 404, refused.text  # no longer a reviewer of the team: as if the id were unknown
    after = service.ledger.get_approval(approval_id)
    assert after is not None and after.state == "pending"
    assert service.ledger.decisions_of(approval_id) == []


async def test_an_edit_that_breaks_the_file_leaves_that_team_without_reviewers(
    service: Service, http: httpx.AsyncClient, policy_dir: Path
) -> None:
    approval_id = service.waiting()
    edit(policy_dir, "reviewers:\n", "reviewers:\n  - not a mapping\n")

    refused = await approve(http, service, "sam", approval_id)
    assert refused.status_code == 404, refused.text  # nobody reviews for a broken team
    health = (await http.get("/health")).json()
    assert "onboarding" in health["broken_policies"]
    after = service.ledger.get_approval(approval_id)
    assert after is not None and after.state == "pending"


def test_live_policies_read_again_only_when_a_file_changes(policy_dir: Path) -> None:
    live = LivePolicies(policy_dir, every=0)
    first = live.current()
    assert live.current() is first  # nothing changed: the same set, not a new one
    edit(policy_dir, "  sam: [support]\n", "  sam: [support, finance]\n")
    second = live.current()
    assert second is not first
    assert second.get("onboarding").roles_of("sam") == frozenset({"support", "finance"})


def test_live_policies_wait_for_their_interval(policy_dir: Path) -> None:
    live = LivePolicies(policy_dir, every=3600)
    first = live.current()
    edit(policy_dir, "  sam: [support]\n", "")
    assert live.current() is first  # within the interval nothing is read


def test_a_policy_directory_that_disappears_leaves_no_team(policy_dir: Path) -> None:
    live = LivePolicies(policy_dir, every=0)
    assert "onboarding" in live.current().teams
    shutil.rmtree(policy_dir)
    assert live.current().teams == ()
