"""Pausing and unpausing over the REST API: owners and operators alone, with a reason; everyone else refused.

The service reads a copy of the demo policies where onboarding names `owners: {owner: ops-lead, backup: finance}`
(alice holds finance), `olga` holds the `operator` role, and the welcome-email rule has owners of its own
(sam, backup support). maria reviews growth only; sam is a plain reviewer of the team otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from server_support import WELCOME, Service

from guard import CallDenied, Guard

pytestmark = [pytest.mark.anyio, pytest.mark.operators]


def _echo(**kw: Any) -> dict[str, Any]:
    return kw


def _find_contact(service: Service) -> list[str]:
    """Look a contact up in a new run of onboarding; the reasons a pause denied it, if one did."""
    guard = Guard(policies=service.app.state.desk.policies, db=service.url, approval="defer", log_level="error")
    try:
        tool = guard.tool(_echo, name="crm.find_contact")
        with guard.run("onboarding"):
            try:
                tool(email=WELCOME["to"])
            except CallDenied as denied:
                return [denied.reason]
        return []
    finally:
        guard.close()


async def test_an_owner_pauses_the_team_alone_with_a_reason_and_the_ledger_keeps_who_when_and_why(
    service: Service, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/api/pauses", headers=service.auth("alice"), json={"team": "onboarding", "reason": "invoices doubled"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scope"] == "team" and body["paused_by"] == "alice"
    assert body["owners"] == [{"owner": "ops-lead", "backup": "finance"}]
    [active] = service.ledger.active_pauses()
    assert (active["id"], active["paused_by"], active["reason"]) == (body["pause_id"], "alice", "invoices doubled")
    listed = (await client.get("/api/pauses", headers=service.auth("sam"))).json()
    assert [(p["target"], p["may_lift"]) for p in listed] == [("onboarding", False)]
    lifted = await client.post(
        "/api/pauses/lift", headers=service.auth("ops-lead"), json={"team": "onboarding", "reason": "duplicates voided"}
    )
    assert lifted.status_code == 200 and lifted.json()["lifted"] == 1
    assert service.ledger.active_pauses() == []
    events = list(service.ledger.pause_events())
    assert [(e.actor, e.to_state, json.loads(e.detail)["reason"]) for e in events] == [
        ("alice", "paused", "invoices doubled"),
        ("ops-lead", "lifted", "duplicates voided"),
    ]


async def test_an_operator_pauses_a_tool_and_the_next_call_of_it_is_denied_naming_the_pause(
    service: Service, client: httpx.AsyncClient, olga: str
) -> None:
    response = await client.post(
        "/api/pauses",
        headers=service.auth(olga),
        json={"team": "onboarding", "tool": "crm.*", "reason": "CRM writes wrong ids"},
    )
    assert response.status_code == 201, response.text
    assert _find_contact(service) == [
        "tool crm.* is paused by olga: CRM writes wrong ids (lift it with `guard unpause --tool crm.*`)"
    ]
    lifted = await client.post(
        "/api/pauses/lift", headers=service.auth(olga), json={"team": "onboarding", "tool": "crm.*", "reason": "fixed"}
    )
    assert lifted.status_code == 200
    assert _find_contact(service) == []


async def test_a_rule_owner_may_pause_the_tools_of_the_rule_but_not_the_team(
    service: Service, client: httpx.AsyncClient
) -> None:
    tool = await client.post(
        "/api/pauses",
        headers=service.auth("sam"),
        json={"team": "onboarding", "tool": "email.send_welcome", "reason": "bounces"},
    )
    assert tool.status_code == 201, tool.text
    assert tool.json()["owners"] == [{"owner": "sam", "backup": "support"}]
    team = await client.post(
        "/api/pauses", headers=service.auth("sam"), json={"team": "onboarding", "reason": "bounces"}
    )
    assert team.status_code == 403 and "ops-lead (backup finance)" in team.json()["detail"]


@pytest.mark.parametrize(("who", "status"), [(None, 401), ("maria", 404), ("newcomer", 404), ("sam", 403)])
async def test_nobody_but_owners_and_operators_pauses_or_lifts_and_nothing_is_recorded(
    service: Service, client: httpx.AsyncClient, who: str | None, status: int
) -> None:
    service.ledger.pause("team", "onboarding", reason="held", by="ops-lead", team="onboarding")
    headers = service.auth(who) if who else {}
    for path in ("/api/pauses", "/api/pauses/lift"):
        response = await client.post(path, headers=headers, json={"team": "onboarding", "reason": "mine"})
        assert response.status_code == status, (path, response.text)
    assert [(p["paused_by"], p["reason"]) for p in service.ledger.active_pauses()] == [("ops-lead", "held")]
    assert [e.actor for e in service.ledger.pause_events()] == ["ops-lead"]


async def test_a_pause_without_a_reason_or_with_a_blank_one_is_refused_with_422(
    service: Service, client: httpx.AsyncClient
) -> None:
    for body in ({"team": "onboarding"}, {"team": "onboarding", "reason": "   "}):
        response = await client.post("/api/pauses", headers=service.auth("alice"), json=body)
        assert response.status_code == 422, response.text
    assert service.ledger.active_pauses() == []


async def test_lifting_where_nothing_is_paused_is_404_and_a_run_of_another_team_is_not_found(
    service: Service, client: httpx.AsyncClient
) -> None:
    none = await client.post(
        "/api/pauses/lift", headers=service.auth("alice"), json={"team": "onboarding", "reason": "ok"}
    )
    assert none.status_code == 404 and none.json()["code"] == "no_pause"
    run = service.ledger.open_run("run-growth-1", "growth", actor="agent")
    other = await client.post(
        "/api/pauses", headers=service.auth("alice"), json={"team": "onboarding", "run_id": run.run_id, "reason": "x"}
    )
    assert other.status_code == 404
