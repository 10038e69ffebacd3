"""A staged restart over the REST API: an owner or an operator starts it on a paused point, the calls pass stage by
stage, the owner confirms each held stage, and every step is listed; a plain reviewer and a stranger cannot.

Roles, as in test_server_pauses: onboarding's owner is ops-lead (backup finance, which alice holds), `olga` holds
`operator`, sam is a plain reviewer of the team, maria reviews growth only, and a request without a token is nobody.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from server_support import WELCOME, Service

from guard import CallDenied, Guard

pytestmark = [pytest.mark.anyio, pytest.mark.operators]


def _echo(**kw: Any) -> dict[str, Any]:
    return kw


def _find_contacts(service: Service, n: int) -> list[str]:
    """Look `n` contacts up in one new run of onboarding: `ran` or `denied` for each."""
    guard = Guard(policies=service.app.state.desk.policies, db=service.url, log_level="error")
    out: list[str] = []
    try:
        tool = guard.tool(_echo, name="crm.find_contact")
        with guard.run("onboarding"):  # a stage that lets calls through lets new runs open
            for i in range(n):
                try:
                    tool(email=f"{i}-{WELCOME['to']}")
                    out.append("ran")
                except CallDenied:
                    out.append("denied")
        return out
    finally:
        guard.close()


async def test_an_owner_restarts_a_paused_team_in_stages_confirming_each_and_every_step_is_listed(
    service: Service, client: httpx.AsyncClient, olga: str
) -> None:
    service.ledger.pause("team", "onboarding", reason="invoices doubled", by="ops-lead")
    started = await client.post(
        "/api/pauses/restart",
        headers=service.auth("ops-lead"),
        json={"team": "onboarding", "reason": "mapping fixed", "stages": [1, 3]},
    )
    assert started.status_code == 201, started.text
    assert (started.json()["state"], started.json()["stages"]) == ("passing", [1, 3])
    assert _find_contacts(service, 2) == ["ran", "denied"]  # stage 1: one call, then the pause holds
    early = await client.post(
        "/api/pauses/restart/confirm", headers=service.auth(olga), json={"team": "onboarding", "reason": "looks right"}
    )
    assert early.status_code == 200, early.text  # an operator confirms the held stage
    assert _find_contacts(service, 4) == ["ran", "ran", "ran", "denied"]
    again = await client.post(
        "/api/pauses/restart/confirm",
        headers=service.auth("alice"),  # the backup's role
        json={"team": "onboarding", "reason": "three fine"},
    )
    assert again.status_code == 200 and again.json()["state"] == "done"
    assert _find_contacts(service, 3) == ["ran"] * 3 and service.ledger.active_pauses() == []
    [listed] = (await client.get("/api/pauses/restarts", headers=service.auth("sam"))).json()
    assert [(s["by"], s["to"], s["stage"]) for s in listed["steps"]] == [
        ("ops-lead", "passing", 1),
        ("guard", "holding", 1),
        ("olga", "passing", 2),
        ("guard", "holding", 2),
        ("alice", "done", 2),
    ]


async def test_confirming_a_stage_that_has_not_filled_is_409_and_restarting_what_is_not_paused_is_422(
    service: Service, client: httpx.AsyncClient
) -> None:
    nothing = await client.post(
        "/api/pauses/restart",
        headers=service.auth("ops-lead"),
        json={"team": "onboarding", "reason": "go", "stages": [1]},
    )
    assert nothing.status_code == 422 and "no active pause" in nothing.json()["detail"]
    service.ledger.pause("team", "onboarding", reason="held", by="ops-lead")
    bad = await client.post(
        "/api/pauses/restart",
        headers=service.auth("ops-lead"),
        json={"team": "onboarding", "reason": "go", "stages": [0]},
    )
    assert bad.status_code == 422
    await client.post(
        "/api/pauses/restart",
        headers=service.auth("ops-lead"),
        json={"team": "onboarding", "reason": "go", "stages": [5]},
    )
    early = await client.post(
        "/api/pauses/restart/confirm",
        headers=service.auth("ops-lead"),
        json={"team": "onboarding", "reason": "too soon"},
    )
    assert early.status_code == 409 and "0 of 5" in early.json()["detail"]


@pytest.mark.parametrize(("who", "status"), [(None, 401), ("maria", 404), ("newcomer", 404), ("sam", 403)])
async def test_nobody_but_owners_and_operators_starts_or_confirms_a_staged_restart(
    service: Service, client: httpx.AsyncClient, who: str | None, status: int
) -> None:
    service.ledger.pause("team", "onboarding", reason="held", by="ops-lead")
    headers = service.auth(who) if who else {}
    for path, body in (("/api/pauses/restart", {"stages": [1, 10]}), ("/api/pauses/restart/confirm", {})):
        response = await client.post(path, headers=headers, json={"team": "onboarding", "reason": "mine", **body})
        assert response.status_code == status, (path, response.text)
    assert service.ledger.restarts() == []
