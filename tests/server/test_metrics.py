"""`/metrics` over the real app: the ledger's open work by team, as Prometheus reads it, behind a token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_support import Service

from guard.canonical import args_hash
from guard.ledger import CallRequest, new_id

pytestmark = pytest.mark.anyio

TOKEN = "metrics-secret-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def service_options() -> dict[str, Any]:
    return {"notify_every": None, "metrics_token": TOKEN}


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_a_waiting_approval_shows_by_team_until_it_is_decided(
    service: Service, client: httpx.AsyncClient
) -> None:
    assert not any(name == "guard_approvals_pending" for name, _ in await scrape(client))
    approval_id = service.waiting()

    seen = await scrape(client)
    assert seen[("guard_approvals_pending", (("team", "onboarding"),))] == 1
    assert 0 <= seen[("guard_approval_oldest_pending_seconds", (("team", "onboarding"),))] < 3600
    assert seen[("guard_runs_unfinished", (("state", "paused"), ("team", "onboarding")))] == 1

    record = service.ledger.get_approval(approval_id)
    assert record is not None
    decided = await client.post(
        f"/api/approvals/{approval_id}/decision",
        headers=service.auth("sam"),
        json={"decision": "reject", "reason": "not today", "args_hash": record.args_hash},
    )
    assert decided.status_code == 200, decided.text
    after = await scrape(client)
    assert ("guard_approvals_pending", (("team", "onboarding"),)) not in after
    assert ("guard_runs_unfinished", (("state", "paused"), ("team", "onboarding"))) not in after


async def test_a_call_left_started_is_counted_as_unsettled(service: Service, client: httpx.AsyncClient) -> None:
    service.ledger.open_run("r-stuck", "onboarding", actor="agent")
    args = {"email": "ada@example.com", "name": "Ada"}
    offer = service.ledger.offer(
        CallRequest(
            call_id=new_id("call"),
            run_id="r-stuck",
            team="onboarding",
            tool="crm.upsert_contact",
            args_json='{"email":"ada@example.com","name":"Ada"}',
            args_hash=args_hash(args),
            idempotency_key="k-stuck",
            verdict="allow",
            side_effect="idempotent",
            rule="crm-writes",
            reason="",
            policy_version="sha256:test",
            actor="agent",
        )
    )
    assert offer.kind == "started"  # and nobody ends it: a dead worker's call

    seen = await scrape(client)
    assert seen[("guard_calls_unsettled", (("state", "started"), ("team", "onboarding")))] == 1
    assert seen[("guard_runs_unfinished", (("state", "running"), ("team", "onboarding")))] == 1


async def test_metrics_need_the_token_when_one_is_set(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert "guard_" not in refused.text
    assert (await client.get("/metrics", headers=BEARER)).status_code == 200
