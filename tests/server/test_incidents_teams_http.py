"""Incidents over several teams' runs, over the real API: opened only by someone who may act for every team in
it; seen, judged and closed only by people who act for every one of them; a later run of another team never
enters it. Runs on both backends."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from incident_support import bad_sync
from server_support import POLICIES, Service

from guard import Guard
from guard.incidents import IncidentBook, Scope

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def service_policies(tmp_path: Path) -> Path:
    """ops-lead (owner of onboarding) is also an operator of contacts; olga (operator of contacts) is a mere
    support reviewer of onboarding; rita reviews contacts only."""
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    for name, old, new in (
        ("contacts.yaml", "  olga: [operator]\n", "  olga: [operator]\n  ops-lead: [operator]\n"),
        ("onboarding.yaml", "  ops-lead: [finance, support]\n", "  ops-lead: [finance, support]\n  olga: [support]\n"),
    ):
        path = target / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return target


def _upsert_contact(contact_id: str) -> dict[str, str]:
    return {"contact_id": contact_id}


def _upsert(service: Service, policies: Path, team: str, event: str) -> None:
    """One run of `team` started by the source event `event`, writing one CRM contact (idempotent)."""
    guard = Guard(policies=policies, db=service.url, log_level="error")
    try:
        tool = guard.tool(_upsert_contact, name="crm.upsert_contact")
        with guard.run(team, source_event_id=event):
            tool(contact_id=f"{team}-1")
    finally:
        guard.close()


@pytest.fixture
def two_teams(service: Service, service_policies: Path, tmp_path: Path) -> Service:
    """The contact sync (contacts, 24 records) and an onboarding run, both started by source event sync-1."""
    bad_sync(service, tmp_path / "systems")
    _upsert(service, service_policies, "onboarding", "sync-1")
    service.tokens["ops-lead"] = service.tokens.get("ops-lead") or service.ledger.create_token("ops-lead", by="t")[1]
    return service


async def _open(client: httpx.AsyncClient, service: Service, who: str) -> httpx.Response:
    return await client.post(
        "/api/incidents", headers=service.auth(who), json={"title": "bad sync-1", "source_event_ids": ["sync-1"]}
    )


async def test_an_operator_of_one_team_may_not_open_an_incident_over_two_teams_runs_and_nothing_is_recorded(
    client: httpx.AsyncClient, two_teams: Service
) -> None:
    olga = await _open(client, two_teams, "olga")  # operator of contacts, only support in onboarding
    assert olga.status_code == 403 and "every team in it (contacts, onboarding)" in olga.json()["detail"]
    rita = await _open(client, two_teams, "rita")  # no role in onboarding at all: told nothing about it
    assert rita.status_code == 404 and "onboarding" not in rita.json()["detail"]
    assert (await client.get("/api/incidents", headers=two_teams.auth("ops-lead"))).json() == []


async def test_someone_who_operates_every_team_opens_it_and_only_people_of_every_team_see_judge_or_close_it(
    client: httpx.AsyncClient, two_teams: Service, service_policies: Path
) -> None:
    opened = await _open(client, two_teams, "ops-lead")
    assert opened.status_code == 201
    body = opened.json()
    inc = body["incident_id"]
    assert (body["team"], body["teams"], body["scope"]["teams"]) == (
        None,
        ["contacts", "onboarding"],
        ["contacts", "onboarding"],
    )
    lead, olga, rita = two_teams.auth("ops-lead"), two_teams.auth("olga"), two_teams.auth("rita")
    shown = (await client.get(f"/api/incidents/{inc}", headers=olga)).json()  # a role in both: may see and judge
    assert shown["summary"].startswith("25 records changed in 2 systems") and shown["may_operate"] is False
    judged = await client.post(
        f"/api/incidents/{inc}/verdicts", headers=olga, json={"verdict": "safe", "tool": "crm.upsert_contact"}
    )
    assert judged.json()["changed"] == 1
    assert (await client.get(f"/api/incidents/{inc}", headers=rita)).status_code == 404  # contacts only
    assert (await client.get("/api/incidents", headers=rita)).json() == []
    assert [i["incident_id"] for i in (await client.get("/api/incidents", headers=olga)).json()] == [inc]
    _upsert(two_teams, service_policies, "growth", "sync-1")  # a later run of a third team, same source event
    after = (await client.get(f"/api/incidents/{inc}", headers=lead)).json()
    assert after["summary"].startswith("25 records changed") and after["may_operate"] is True
    assert (await client.post(f"/api/incidents/{inc}/close", headers=olga, json={"text": "x"})).status_code == 403
    assert (await client.post(f"/api/incidents/{inc}/close", headers=lead, json={"text": "fixed"})).status_code == 200


async def test_a_reviewer_of_one_team_sees_its_incident_behind_more_than_a_page_of_incidents_of_other_teams(
    client: httpx.AsyncClient, service: Service
) -> None:
    """The list's limit counts what the reviewer may see: 100 newer incidents over contacts and onboarding, which
    rita (contacts only) may not see, do not push the contacts incident off her list."""
    book = IncidentBook(service.ledger)
    mine = book.open(Scope(team="contacts", run_ids=("contacts:sync-1",)), title="rita's", opened_by="olga")
    for i in range(100):
        book.open(
            Scope(run_ids=(f"both:{i}",), teams=("contacts", "onboarding")), title=f"both {i}", opened_by="ops-lead"
        )
    service.tokens["rita"] = service.ledger.create_token("rita", by="test")[1]
    listed = await client.get("/api/incidents", headers=service.auth("rita"))
    assert [i["incident_id"] for i in listed.json()] == [mine.incident_id]
    both = (await client.get("/api/incidents", headers=service.auth("ops-lead"))).json()  # acts for both teams
    assert (
        len(both) == 100 and both[0]["title"] == "both 99" and mine.incident_id not in {i["incident_id"] for i in both}
    )
