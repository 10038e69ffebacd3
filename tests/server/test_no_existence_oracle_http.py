"""No answer tells a reviewer whether something of another team exists, over the real app over HTTP: for every route
family that takes an id or a team (approvals, runs, pauses, staged restarts, incidents, and their pages), maria (a
reviewer of growth only) gets for another team's id exactly the answer she gets for an id that does not exist: the
same status, the same content type and the same body once the id itself is set aside. (Slack: test_slack_actions.)

There is no route that takes a call id or a drill id on its own: calls are reached through their approval, run or
incident, drills only through the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from incident_support import bad_sync
from server_support import Service

from guard.incidents import IncidentBook, Scope

pytestmark = pytest.mark.anyio

STRANGER = "maria"  # reviews for growth only


def assert_same_answer(unknown: httpx.Response, other: httpx.Response, unknown_id: str, other_id: str) -> None:
    """The two answers differ in nothing but the id they were asked about."""
    assert unknown.status_code == other.status_code == 404, (unknown.text, other.text)
    assert unknown.headers["content-type"] == other.headers["content-type"]
    assert unknown.text.replace(unknown_id, "<id>") == other.text.replace(other_id, "<id>")


async def _both(
    client: httpx.AsyncClient, method: str, template: str, unknown_id: str, other_id: str, **kw: Any
) -> None:
    """Ask `template` (a path, or a JSON body holding `{id}`) about both ids and compare the answers."""

    def fill(value: Any, ident: str) -> Any:
        if isinstance(value, str):
            return value.replace("{id}", ident)
        if isinstance(value, dict):
            return {k: fill(v, ident) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
        return value

    unknown, other = [
        await client.request(method, fill(template, ident), **{k: fill(v, ident) for k, v in kw.items()})
        for ident in (unknown_id, other_id)
    ]
    assert_same_answer(unknown, other, unknown_id, other_id)


@pytest.fixture
def other(service: Service) -> dict[str, str]:
    """An approval and a run of team onboarding, which maria does not review for."""
    approval = service.ledger.get_approval(service.waiting())
    assert approval is not None
    return {"approval": approval.approval_id, "run": approval.run_id}


async def test_an_approval_of_another_team_is_answered_as_an_unknown_id_when_shown_and_decided(
    service: Service, client: httpx.AsyncClient, other: dict[str, str]
) -> None:
    """Show and decide an onboarding approval as maria, and an id that does not exist: one answer."""
    auth = service.auth(STRANGER)
    unknown = "apr_" + "0" * (len(other["approval"]) - 4)
    await _both(client, "GET", "/api/approvals/{id}", unknown, other["approval"], headers=auth)
    await _both(
        client,
        "POST",
        "/api/approvals/{id}/decision",
        unknown,
        other["approval"],
        headers=auth,
        json={"decision": "approve", "args_hash": "sha256:x"},
    )


async def test_a_run_or_a_team_of_another_team_is_answered_as_an_unknown_one(
    service: Service, client: httpx.AsyncClient, other: dict[str, str]
) -> None:
    """A run of onboarding and its team as a filter, asked by maria, answer as an unknown run and an unknown team."""
    auth = service.auth(STRANGER)
    await _both(client, "GET", "/api/runs/{id}", "run_doesnotexist", other["run"], headers=auth)
    await _both(client, "GET", "/api/runs?team={id}", "no-such-team", "onboarding", headers=auth)


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/api/pauses", {}),
        ("/api/pauses/lift", {}),
        ("/api/pauses/restart", {"stages": [1, 10]}),
        ("/api/pauses/restart/confirm", {}),
    ],
)
async def test_pausing_or_restarting_another_team_or_its_run_is_answered_as_an_unknown_one(
    service: Service, client: httpx.AsyncClient, other: dict[str, str], path: str, extra: dict[str, Any]
) -> None:
    """Pause, lift, restart and confirm on team onboarding, or on its run under maria's own team: each answer is the
    one for a team (or run) that does not exist."""
    auth = service.auth(STRANGER)
    body = {"reason": "checking", **extra}
    await _both(client, "POST", path, "no-such-team", "onboarding", headers=auth, json={**body, "team": "{id}"})
    await _both(
        client,
        "POST",
        path,
        "run_doesnotexist",
        other["run"],
        headers=auth,
        json={**body, "team": "growth", "run_id": "{id}"},
    )


@pytest.fixture
def incident(service: Service, tmp_path: Path) -> str:
    """An incident of team contacts (opened by its operator olga), which maria does not review for."""
    bad_sync(service, tmp_path / "systems")
    book = IncidentBook(service.ledger)
    return book.open(
        Scope(team="contacts", source_event_ids=("sync-1",)), title="bad sync", opened_by="olga"
    ).incident_id


INCIDENT_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "", None),
    ("GET", "/records", None),
    ("GET", "/records.csv", None),
    ("GET", "/history", None),
    ("GET", "/snapshot", None),
    ("POST", "/verdicts", {"verdict": "wrong", "system": "crm"}),
    ("POST", "/notes", {"text": "looking"}),
    ("POST", "/close", {"text": "done"}),
    ("POST", "/snapshot", None),
    ("POST", "/repair", {"sample": 1}),
]


@pytest.mark.parametrize(("method", "suffix", "body"), INCIDENT_ROUTES, ids=[f"{m} {s}" for m, s, _ in INCIDENT_ROUTES])
async def test_every_route_of_another_teams_incident_answers_as_for_an_unknown_incident(
    service: Service, client: httpx.AsyncClient, incident: str, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """Every incident route, asked by maria about contacts' incident and about an id that does not exist: one
    answer."""
    unknown = "inc_" + "0" * (len(incident) - 4)
    kw: dict[str, Any] = {"headers": service.auth(STRANGER)}
    if body is not None:
        kw["json"] = body
    await _both(client, method, "/api/incidents/{id}" + suffix, unknown, incident, **kw)


async def test_opening_an_incident_on_another_teams_runs_answers_as_on_runs_that_do_not_exist(
    service: Service, client: httpx.AsyncClient, other: dict[str, str]
) -> None:
    """Maria opening an incident on onboarding (by team, or by one of its runs) is answered as for a team or run
    that does not exist."""
    auth = service.auth(STRANGER)
    await _both(
        client,
        "POST",
        "/api/incidents",
        "no-such-team",
        "onboarding",
        headers=auth,
        json={"title": "x", "team": "{id}"},
    )
    await _both(
        client,
        "POST",
        "/api/incidents",
        "run_doesnotexist",
        other["run"],
        headers=auth,
        json={"title": "x", "run_ids": ["{id}"]},
    )


async def test_the_pages_answer_another_teams_approval_and_incident_as_unknown_ones(
    service: Service, client: httpx.AsyncClient, other: dict[str, str], incident: str
) -> None:
    """On the reviewer's site (signed in as maria), another team's approval and incident pages are the pages of ids
    that do not exist."""
    await client.post("/login", data={"token": service.tokens[STRANGER]})
    await _both(client, "GET", "/approvals/{id}", "apr_" + "0" * (len(other["approval"]) - 4), other["approval"])
    await _both(client, "GET", "/incidents/{id}", "inc_" + "0" * (len(incident) - 4), incident)
