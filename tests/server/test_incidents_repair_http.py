"""Snapshot and repair over the real API, with the agent's tools in the service (`guard serve --app`): operators
take the snapshot and repair a sample then the rest, reviewers of the team may not, nobody else sees anything; a
service without the agent's tools refuses repairs plainly. Runs on both backends."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from incident_support import bad_sync
from server_support import POLICIES, REPO, Service, healthy

from examples.bad_run.agent import make_tools, sync_contacts
from examples.bad_run.systems import Crm, Mail
from guard import Guard
from guard.errors import GuardUsageError
from guard.ledger import Ledger
from guard.server import create_app
from guard.testing import poll

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def systems(tmp_path: Path) -> Path:
    return tmp_path / "systems"


@pytest.fixture
def agent(ledger_url: str, shared_key: None, systems: Path) -> Iterator[Guard]:
    """The bad-run agent's Guard (its tools, compensations and `.inspect` hooks) on the service's ledger."""
    guard = Guard(policies=POLICIES, db=ledger_url, log_level="error")
    make_tools(guard, systems)
    try:
        yield guard
    finally:
        guard.close()


@pytest.fixture
def service_options(agent: Guard, tmp_path: Path) -> dict[str, Any]:
    return {"agent": agent, "snapshots": tmp_path / "snapshots"}


@pytest.fixture
def synced(service: Service, systems: Path) -> Service:
    bad_sync(service, systems)
    return service


async def _open_judged(client: httpx.AsyncClient, service: Service) -> str:
    opened = await client.post(
        "/api/incidents",
        headers=service.auth("olga"),
        json={"title": "sync wrote churned", "team": "contacts", "source_event_ids": ["sync-1"]},
    )
    inc = str(opened.json()["incident_id"])
    judged = await client.post(
        f"/api/incidents/{inc}/verdicts", headers=service.auth("rita"), json={"verdict": "wrong", "system": "mail"}
    )
    assert judged.json()["changed"] == 12
    return inc


async def test_an_operator_takes_the_snapshot_through_the_agents_inspect_hooks_and_reviewers_may_not(
    client: httpx.AsyncClient, synced: Service
) -> None:
    inc = await _open_judged(client, synced)
    assert (await client.post(f"/api/incidents/{inc}/snapshot", headers=synced.auth("rita"))).status_code == 403
    assert (await client.post(f"/api/incidents/{inc}/snapshot", headers=synced.auth("maria"))).status_code == 404
    taken = await client.post(f"/api/incidents/{inc}/snapshot", headers=synced.auth("olga"))
    assert taken.status_code == 201
    body = taken.json()
    assert (body["records"], body["inspected"], body["read_back"]) == (24, 24, True)
    again = await client.post(f"/api/incidents/{inc}/snapshot", headers=synced.auth("olga"))
    assert again.status_code == 409  # written once
    file = await client.get(f"/api/incidents/{inc}/snapshot", headers=synced.auth("rita"))
    assert file.status_code == 200 and hashlib.sha256(file.content).hexdigest() == body["sha256"]
    assert b'"current": {"contact_id": "ct_000"' in file.content  # the CRM's record as it is now
    assert (await client.get(f"/api/incidents/{inc}/snapshot", headers=synced.auth("maria"))).status_code == 404


async def test_an_operator_repairs_a_sample_then_the_rest_over_http_and_no_compensation_runs_twice(
    client: httpx.AsyncClient, synced: Service, systems: Path
) -> None:
    inc = await _open_judged(client, synced)
    olga, rita = synced.auth("olga"), synced.auth("rita")
    early = await client.post(f"/api/incidents/{inc}/repair", headers=olga, json={"sample": 3})
    assert early.status_code == 422 and "snapshot" in early.json()["detail"]  # the evidence first
    await client.post(f"/api/incidents/{inc}/snapshot", headers=olga)
    refused = await client.post(f"/api/incidents/{inc}/repair", headers=rita, json={"sample": 3})
    assert refused.status_code == 403 and Mail(systems).enrolled() == 12
    assert (
        await client.post(f"/api/incidents/{inc}/repair", headers=synced.auth("maria"), json={"sample": 3})
    ).status_code == 404
    rest_first = await client.post(f"/api/incidents/{inc}/repair", headers=olga, json={"rest": True})
    assert rest_first.status_code == 422 and Mail(systems).enrolled() == 12
    sample = (await client.post(f"/api/incidents/{inc}/repair", headers=olga, json={"sample": 3})).json()
    assert (sample["repaired"], sample["left"]) == (3, 9) and Mail(systems).enrolled() == 9
    rest = (await client.post(f"/api/incidents/{inc}/repair", headers=olga, json={"rest": True})).json()
    assert (rest["repaired"], rest["left"], rest["after"]["mail"]) == (9, 0, {"rolled_back": 12})
    again = (await client.post(f"/api/incidents/{inc}/repair", headers=olga, json={"rest": True})).json()
    assert again["repaired"] == 0
    assert Mail(systems).enrolled() == 0 and Mail(systems).total_changes() == 24  # 12 enrolments, 12 undone once
    assert Crm(systems).total_writes() == 12  # CRM records were not judged wrong: untouched
    log = (await client.get(f"/api/incidents/{inc}", headers=rita)).json()["log"]
    assert [e["text"].split(":")[0] for e in log if e["author"] == "olga" and e["text"].startswith("repair")] == [
        "repair sample of 3",
        "repair rest (9)",
        "repair rest (0)",
    ]


async def test_a_service_without_the_agents_tools_snapshots_ledger_facts_and_refuses_a_repair_naming_the_cli(
    ledger_url: str, shared_key: None, systems: Path, tmp_path: Path
) -> None:
    app = create_app(ledger_url, POLICIES, session_secret=b"s" * 32, snapshots=tmp_path / "snaps")
    service = Service(app, app.state.desk.ledger, ledger_url, {}, [])
    try:
        bad_sync(service, systems)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            inc = await _open_judged(client, service)
            taken = (await client.post(f"/api/incidents/{inc}/snapshot", headers=service.auth("olga"))).json()
            assert (taken["records"], taken["inspected"], taken["read_back"]) == (24, 0, False)
            refused = await client.post(
                f"/api/incidents/{inc}/repair", headers=service.auth("olga"), json={"sample": 1}
            )
        assert refused.status_code == 409 and refused.json()["code"] == "no_agent_tools"
        assert "guard incident repair" in refused.json()["detail"] and Mail(systems).enrolled() == 12
    finally:
        app.state.desk.ledger.close()


def test_a_service_given_an_agent_on_another_ledger_refuses_to_start(
    ledger_url: str, shared_key: None, tmp_path: Path
) -> None:
    other = Guard(policies=POLICIES, db=f"sqlite:///{tmp_path / 'other.db'}", log_level="error")
    try:
        with pytest.raises(GuardUsageError, match="same ledger"):
            create_app(ledger_url, POLICIES, agent=other)
    finally:
        other.close()


def test_guard_serve_with_the_agents_app_repairs_over_real_http(
    ledger_url: str, shared_key: None, systems: Path, tmp_path: Path
) -> None:
    guard = Guard(policies=POLICIES, db=ledger_url, log_level="error")
    try:
        tools = make_tools(guard, systems)
        tools.billing.seed({f"ct_{i:03d}": "paid" for i in range(4)})
        tools.crm.seed({f"ct_{i:03d}": "customer" for i in range(4)})
        sync_contacts(guard, tools, "sync-1")
    finally:
        guard.close()
    ledger = Ledger(ledger_url)
    try:
        tokens = {name: ledger.create_token(name, by="test")[1] for name in ("olga", "rita")}
    finally:
        ledger.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "GUARD_POLICY_DIR": str(POLICIES),
        "GUARD_BAD_RUN_STATE": str(systems),
        "GUARD_DEMO_LOG": "error",
    }
    argv = [sys.executable, "-m", "guard", "serve", "--port", str(port), "--db", ledger_url, "--log-level", "warning"]
    argv += ["--app", "examples.bad_run.agent:app", "--snapshots", str(tmp_path / "snaps")]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: proc.poll() is not None or healthy(url), timeout=30, what="guard serve --app answering /health")
        assert proc.poll() is None, proc.communicate()[1].decode()
        with httpx.Client(base_url=url, timeout=60) as http:
            olga, rita = ({"Authorization": f"Bearer {tokens[n]}"} for n in ("olga", "rita"))
            inc = http.post(
                "/api/incidents", headers=olga, json={"title": "t", "team": "contacts", "source_event_ids": ["sync-1"]}
            ).json()["incident_id"]
            http.post(f"/api/incidents/{inc}/verdicts", headers=rita, json={"verdict": "wrong", "system": "crm"})
            taken = http.post(f"/api/incidents/{inc}/snapshot", headers=olga).json()
            assert (taken["records"], taken["inspected"]) == (8, 8)
            done = http.post(f"/api/incidents/{inc}/repair", headers=olga, json={"sample": 4}).json()
        assert (done["repaired"], done["left"]) == (4, 0)
        assert set(Crm(systems).statuses().values()) == {"customer"}  # every wrong status put back
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
