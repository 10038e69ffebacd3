"""A run an operator finished by hand reads `finished_by_hand` with the operator's note on every surface the
approval service serves (the REST API and the reviewer page, over HTTP), never `completed`."""

from __future__ import annotations

import httpx
import pytest
from server_support import Service

from guard.ledger import RunClose, RunState
from guard.runtime.operator import finish

pytestmark = pytest.mark.anyio


def finished_by_hand(service: Service) -> tuple[str, str]:
    """A run whose welcome email was rejected and whose agent stopped, closed by hand; (approval id, run id)."""
    approval_id = service.waiting()
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None
    service.ledger.decide(
        approval_id, reviewer="sam", decision="reject", reviewer_roles=frozenset({"support"}), reason="wrong address"
    )
    service.ledger.move_run(
        approval.run_id,
        RunClose(RunState.HALTED, status_label="agent_stopped", error_summary="CallRejected: wrong address"),
        actor="agent",
    )
    finish(service.ledger, approval.run_id, operator="oncall", note="sent the welcome by hand to the right address")
    return approval_id, approval.run_id


async def test_the_api_shows_a_run_finished_by_hand_with_who_and_the_note(
    service: Service, client: httpx.AsyncClient
) -> None:
    _, run_id = finished_by_hand(service)
    story = (await client.get(f"/api/runs/{run_id}", headers=service.auth("sam"))).json()
    assert (story["run"]["state"], story["run"]["status_label"]) == ("finished_by_hand", "agent_stopped")
    assert [(m["operator"], m["action"], m["note"]) for m in story["manual_actions"]] == [
        ("oncall", "finish", "sent the welcome by hand to the right address")
    ]


async def test_the_reviewer_page_shows_the_run_finished_by_hand_and_the_note(
    service: Service, client: httpx.AsyncClient
) -> None:
    approval_id, _ = finished_by_hand(service)
    await client.post("/login", data={"token": service.tokens["sam"]})
    page = (await client.get(f"/approvals/{approval_id}")).text
    assert "state finished_by_hand" in page and "state completed" not in page
    assert "oncall finish: sent the welcome by hand to the right address" in page
