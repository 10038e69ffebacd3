"""Incidents over the real API (the app over HTTP, a real ledger file): operators open and close, reviewers of the
team tag and note, everyone else gets the 404 of an unknown id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from incident_support import bad_sync
from server_support import Service

pytestmark = pytest.mark.anyio


@pytest.fixture
def synced(service: Service, tmp_path: Path) -> Service:
    bad_sync(service, tmp_path / "systems")
    return service


async def _open(client: httpx.AsyncClient, service: Service, who: str = "olga") -> httpx.Response:
    return await client.post(
        "/api/incidents",
        headers=service.auth(who),
        json={"title": "sync wrote churned", "team": "contacts", "source_event_ids": ["sync-1"]},
    )


async def test_an_operator_opens_an_incident_and_a_reviewer_of_the_team_may_not(
    client: httpx.AsyncClient, synced: Service
) -> None:
    refused = await _open(client, synced, "rita")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    stranger = await _open(client, synced, "maria")
    assert stranger.status_code == 404
    opened = await _open(client, synced)
    assert opened.status_code == 201
    body: dict[str, Any] = opened.json()
    assert (body["opened_by"], body["owner"], body["team"], body["state"]) == ("olga", "olga", "contacts", "open")
    assert body["started_at"] is not None and body["last_changed_at"] is not None


async def test_a_reviewer_tags_by_filter_and_by_id_and_the_totals_and_history_follow(
    client: httpx.AsyncClient, synced: Service
) -> None:
    inc = (await _open(client, synced)).json()["incident_id"]
    rita = synced.auth("rita")
    crm = (await client.get(f"/api/incidents/{inc}/records", headers=rita, params={"system": "crm"})).json()
    assert len(crm) == 12 and all(r["system"] == "crm" for r in crm)
    done = (
        await client.post(
            f"/api/incidents/{inc}/verdicts",
            headers=rita,
            json={"verdict": "wrong", "system": "mail", "note": "paid plans"},
        )
    ).json()
    assert (done["matched"], done["changed"]) == (12, 12)
    one = crm[0]["call_id"]
    await client.post(f"/api/incidents/{inc}/verdicts", headers=rita, json={"verdict": "safe", "call_ids": [one]})
    await client.post(f"/api/incidents/{inc}/verdicts", headers=rita, json={"verdict": "unclear", "call_ids": [one]})
    shown = (await client.get(f"/api/incidents/{inc}", headers=rita)).json()
    assert shown["verdicts"] == {"safe": 0, "wrong": 12, "unclear": 1, "not_judged": 11}
    assert shown["summary"].startswith("24 records changed in 2 systems: 12 wrong, 0 safe, 1 unclear")
    history = (await client.get(f"/api/incidents/{inc}/history", headers=rita, params={"call_id": one})).json()
    assert [(h["verdict"], h["by"]) for h in history] == [("safe", "rita"), ("unclear", "rita")]
    text = (await client.get(f"/api/incidents/{inc}/records.csv", headers=rita)).text
    assert text.splitlines()[0].startswith("call_id,run_id,seq,system") and len(text.splitlines()) == 25


async def test_an_empty_filter_and_a_bad_verdict_are_refused_and_nothing_is_judged(
    client: httpx.AsyncClient, synced: Service
) -> None:
    inc = (await _open(client, synced)).json()["incident_id"]
    rita = synced.auth("rita")
    empty = await client.post(f"/api/incidents/{inc}/verdicts", headers=rita, json={"verdict": "wrong"})
    assert empty.status_code == 422
    bad = await client.post(f"/api/incidents/{inc}/verdicts", headers=rita, json={"verdict": "fine", "system": "crm"})
    assert bad.status_code == 422
    shown = (await client.get(f"/api/incidents/{inc}", headers=rita)).json()
    assert shown["verdicts"]["not_judged"] == 24


async def test_notes_go_in_the_shared_log_and_only_an_operator_closes_after_which_nothing_changes(
    client: httpx.AsyncClient, synced: Service
) -> None:
    inc = (await _open(client, synced)).json()["incident_id"]
    rita, olga = synced.auth("rita"), synced.auth("olga")
    assert (
        await client.post(
            f"/api/incidents/{inc}/notes", headers=rita, json={"text": "CRM looks wrong for paying customers"}
        )
    ).status_code == 201
    assert (await client.post(f"/api/incidents/{inc}/close", headers=rita, json={"text": "done"})).status_code == 403
    assert (await client.post(f"/api/incidents/{inc}/close", headers=olga, json={"text": "fixed"})).status_code == 200
    late = await client.post(f"/api/incidents/{inc}/notes", headers=rita, json={"text": "one more"})
    assert late.status_code == 409
    log = (await client.get(f"/api/incidents/{inc}", headers=olga)).json()["log"]
    assert [(e["author"], e["kind"]) for e in log][-2:] == [("rita", "note"), ("olga", "action")]
    assert "closed: fixed" in log[-1]["text"]


async def test_a_reviewer_of_another_team_sees_no_incident_and_gets_the_404_of_an_unknown_id(
    client: httpx.AsyncClient, synced: Service
) -> None:
    inc = (await _open(client, synced)).json()["incident_id"]
    maria = synced.auth("maria")
    assert (await client.get("/api/incidents", headers=maria)).json() == []
    for path in (f"/api/incidents/{inc}", "/api/incidents/inc_nothing"):
        answer = await client.get(path, headers=maria)
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert (await client.get("/api/incidents")).status_code == 401


async def test_an_owner_who_is_not_a_reviewer_of_the_team_is_refused_with_422_naming_who_may_own_it(
    client: httpx.AsyncClient, synced: Service
) -> None:
    """`owner` must be a reviewer of the incident's team per its policy: maria (growth) and a made-up name are
    refused with a reason naming contacts' reviewers, and no incident is opened; rita (a reviewer) may own it."""
    olga = synced.auth("olga")
    scope = {"title": "sync wrote churned", "team": "contacts", "source_event_ids": ["sync-1"]}
    for owner in ("maria", "nobody-at-all", " "):
        refused = await client.post("/api/incidents", headers=olga, json={**scope, "owner": owner})
        assert refused.status_code == 422, (owner, refused.text)
        assert refused.json()["code"] == "invalid"
        if owner.strip():
            assert f"owner {owner} is not a reviewer of team contacts" in refused.json()["detail"]
            assert "olga, rita, tess" in refused.json()["detail"]
    assert (await client.get("/api/incidents", headers=olga)).json() == []
    opened = await client.post("/api/incidents", headers=olga, json={**scope, "owner": "rita"})
    assert opened.status_code == 201 and opened.json()["owner"] == "rita"


async def test_the_page_refuses_an_owner_who_is_not_a_reviewer_of_the_team_and_opens_nothing(
    client: httpx.AsyncClient, synced: Service
) -> None:
    """The open form on the page gives the same refusal (422, the reason on the page) for an owner of another
    team."""
    await client.post("/login", data={"token": synced.tokens["olga"]})
    page = await client.get("/incidents")
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    refused = await client.post(
        "/incidents",
        data={"csrf_token": csrf, "title": "t", "team": "contacts", "source_events": "sync-1", "owner": "maria"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert refused.status_code == 422 and "owner maria is not a reviewer of team contacts" in refused.text
    assert (await client.get("/api/incidents", headers=synced.auth("olga"))).json() == []
