"""Filters that take a fixed set of values, over the real app over HTTP: an unknown value is a 422 naming the allowed
ones (JSON on the API, a page on the reviewer's site), never an empty answer that reads as "nothing there"; limits
outside their range likewise. A walk over every route checks that no fixed-set filter is a free text any more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from incident_support import bad_sync
from server_support import Service

from guard.incidents import VERDICTS
from guard.ledger import CallState, IncidentState, RunState

pytestmark = pytest.mark.anyio

# The query parameters that filter by a fixed set, wherever a route takes one (`done` picks a page's notice).
FIXED = {"state", "judged", "done"}


@pytest.fixture
def synced(service: Service, tmp_path: Path) -> Service:
    bad_sync(service, tmp_path / "systems")
    return service


async def _incident(client: httpx.AsyncClient, service: Service) -> str:
    opened = await client.post(
        "/api/incidents",
        headers=service.auth("olga"),
        json={"title": "sync wrote churned", "team": "contacts", "source_event_ids": ["sync-1"]},
    )
    assert opened.status_code == 201, opened.text
    return opened.json()["incident_id"]


def _names_all(text: str, values: list[str]) -> bool:
    return all(f"'{v}'" in text or f"&#x27;{v}&#x27;" in text for v in values)


async def test_an_unknown_run_state_is_refused_with_422_naming_every_run_state(
    service: Service, client: httpx.AsyncClient
) -> None:
    """`GET /api/runs?state=zzz` is a 422 whose reason names each run state, where it used to be 200 and []."""
    service.waiting()
    answer = await client.get("/api/runs", params={"state": "zzz"}, headers=service.auth("sam"))
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "invalid" and body["detail"].startswith("state: ")
    assert _names_all(body["detail"], [s.value for s in RunState])
    assert body["errors"][0]["loc"] == ["query", "state"]


async def test_a_known_run_state_still_filters_the_runs(service: Service, client: httpx.AsyncClient) -> None:
    """The typed filter keeps working: the paused run is listed under `paused` and not under `completed`."""
    approval = service.ledger.get_approval(service.waiting())
    assert approval is not None
    paused = await client.get("/api/runs", params={"state": "paused"}, headers=service.auth("sam"))
    assert [r["run_id"] for r in paused.json()] == [approval.run_id]
    done = await client.get("/api/runs", params={"state": "completed"}, headers=service.auth("sam"))
    assert done.status_code == 200 and done.json() == []


@pytest.mark.parametrize("limit", ["0", "-1", "501", "99999999999999999999", "ten"])
async def test_a_run_limit_outside_1_to_500_is_refused_with_422(
    service: Service, client: httpx.AsyncClient, limit: str
) -> None:
    """Zero, negative, too large and non-numeric limits are refused with the reason, not clamped or passed on."""
    answer = await client.get("/api/runs", params={"limit": limit}, headers=service.auth("sam"))
    assert answer.status_code == 422 and answer.json()["detail"].startswith("limit: ")


@pytest.mark.parametrize(
    ("params", "values"),
    [
        ({"state": "zzz"}, [s.value for s in CallState]),
        ({"judged": "maybe"}, [*VERDICTS, "none"]),
    ],
)
async def test_an_unknown_record_state_or_verdict_filter_is_refused_with_422_naming_the_set(
    client: httpx.AsyncClient, synced: Service, params: dict[str, str], values: list[str]
) -> None:
    """An incident's records filtered by a call state or verdict outside the set: 422 naming every allowed value."""
    inc = await _incident(client, synced)
    answer = await client.get(f"/api/incidents/{inc}/records", params=params, headers=synced.auth("rita"))
    assert answer.status_code == 422, answer.text
    assert _names_all(answer.json()["detail"], values)


async def test_a_verdict_by_filter_with_an_unknown_state_is_refused_and_judges_nothing(
    client: httpx.AsyncClient, synced: Service
) -> None:
    """The verdict body's `state` is the same call-state set: `compelted` is a 422, and no record is judged."""
    inc = await _incident(client, synced)
    rita = synced.auth("rita")
    answer = await client.post(
        f"/api/incidents/{inc}/verdicts", headers=rita, json={"verdict": "wrong", "state": "compelted"}
    )
    assert answer.status_code == 422 and "'completed'" in answer.json()["detail"]
    shown = (await client.get(f"/api/incidents/{inc}", headers=rita)).json()
    assert shown["verdicts"]["wrong"] == 0


async def test_an_unknown_incident_state_is_refused_on_the_api_and_on_the_page(
    client: httpx.AsyncClient, synced: Service
) -> None:
    """`/api/incidents?state=zzz` and the page's `/incidents?state=zzz` both answer 422 naming open and closed; the
    page says it as a page."""
    api = await client.get("/api/incidents", params={"state": "zzz"}, headers=synced.auth("olga"))
    assert api.status_code == 422 and _names_all(api.json()["detail"], [s.value for s in IncidentState])
    await client.post("/login", data={"token": synced.tokens["olga"]})
    page = await client.get("/incidents", params={"state": "zzz"})
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert _names_all(page.text, [s.value for s in IncidentState])
    assert (await client.get("/incidents", params={"state": ""})).status_code == 200  # the form's "all"


async def test_the_incident_page_refuses_an_unknown_record_filter_and_takes_an_empty_one(
    client: httpx.AsyncClient, synced: Service
) -> None:
    """On the incident's page an empty filter field means any record; `state=zzz` or `judged=maybe` is a 422 page."""
    inc = await _incident(client, synced)
    await client.post("/login", data={"token": synced.tokens["rita"]})
    assert (await client.get(f"/incidents/{inc}", params={"state": "", "judged": ""})).status_code == 200
    for params in ({"state": "zzz"}, {"judged": "maybe"}, {"done": "<script>"}):
        page = await client.get(f"/incidents/{inc}", params=params)
        assert page.status_code == 422, params
        assert "<script>" not in page.text


def _routes(routes: list[Any]) -> list[APIRoute]:
    """The app's routes, those of its included routers too (the service includes them without a prefix)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif (router := getattr(route, "original_router", None)) is not None:
            found += _routes(router.routes)
    return found


def _fixed_set_queries(app: Any) -> list[tuple[str, str]]:
    """Every (GET route path, query parameter) of the app whose name says it takes a fixed set."""
    return [
        (route.path, q.name)
        for route in _routes(app.routes)
        if "GET" in (route.methods or set[str]())
        for q in route.dependant.query_params
        if q.name in FIXED
    ]


def test_the_walk_finds_the_fixed_set_filters_of_the_api_and_the_pages(service: Service) -> None:
    """The walk below sees the routes it must (so an empty walk cannot pass it)."""
    found = set(_fixed_set_queries(service.app))
    assert {("/api/runs", "state"), ("/api/incidents", "state"), ("/incidents/{incident_id}", "judged")} <= found
    assert {("/approvals/{approval_id}", "done"), ("/pauses", "done")} <= found


async def test_every_fixed_set_filter_of_every_route_refuses_an_unknown_value_with_422(
    service: Service, client: httpx.AsyncClient
) -> None:
    """For each route and each fixed-set query parameter it takes (found by walking the app), a value outside the
    set is a 422 whose reason lists what the parameter takes: none of them is a free text."""
    await client.post("/login", data={"token": service.tokens["sam"]})
    for path, name in _fixed_set_queries(service.app):
        url = path.replace("{", "").replace("}", "")  # any id: the parameter is checked before the route runs
        answer = await client.get(url, params={name: "zzz-not-in-the-set"}, headers=service.auth("sam"))
        assert answer.status_code == 422, (path, name, answer.status_code)
        assert "Input should be" in answer.text, (path, name)


@pytest.mark.parametrize("when", ["NaN", "Infinity", "-Infinity"])
async def test_an_incident_window_that_is_not_a_time_is_refused_with_422(
    client: httpx.AsyncClient, synced: Service, when: str
) -> None:
    """`since` of NaN or an infinity (JSON as Python reads it) is a 422, and no incident is opened on it."""
    olga = synced.auth("olga")
    body = f'{{"title": "t", "team": "contacts", "since": {when}}}'
    answer = await client.post("/api/incidents", headers={**olga, "Content-Type": "application/json"}, content=body)
    assert answer.status_code == 422 and answer.json()["detail"].startswith("since: ")
    assert (await client.get("/api/incidents", headers=olga)).json() == []
