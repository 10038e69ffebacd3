"""The REST API over HTTP (httpx's ASGI transport on the real app and a real ledger file)."""

from __future__ import annotations

import time

import httpx
import pytest
from server_support import WELCOME, Service

pytestmark = pytest.mark.anyio


async def test_the_queue_lists_only_what_the_reviewer_may_decide(service: Service, client: httpx.AsyncClient) -> None:
    mine = service.waiting(actor="onboarding-agent")
    sams_own = service.waiting(actor="sam")
    sam = (await client.get("/api/approvals", headers=service.auth("sam"))).json()
    assert [a["approval_id"] for a in sam] == [mine]  # not the call he asked for himself
    lead = (await client.get("/api/approvals", headers=service.auth("ops-lead"))).json()
    assert {a["approval_id"] for a in lead} == {mine, sams_own}
    assert lead[0]["side_effect"] == "irreversible" and lead[0]["risk"] == 3
    assert [a["approval_id"] for a in lead] == [mine, sams_own]  # same risk: oldest first
    for outsider in ("alice", "maria"):  # finance only; another team's reviewer
        assert (await client.get("/api/approvals", headers=service.auth(outsider))).json() == []


async def test_an_approval_shows_its_full_context_and_the_decisions_allowed(
    service: Service, client: httpx.AsyncClient
) -> None:
    approval_id = service.waiting()
    body = (await client.get(f"/api/approvals/{approval_id}", headers=service.auth("sam"))).json()
    record = service.ledger.get_approval(approval_id)
    assert record is not None
    assert body["args"] == WELCOME and body["args_hash"] == record.args_hash
    assert body["rule"] == "welcome-email" and body["requested_by"] == "onboarding-agent"
    assert body["roles"] == ["support"] and body["expires_at"] == record.expires_at
    assert body["allowed_decisions"] == ["approve", "reject"]
    [call] = body["run"]["calls"]
    assert call["tool"] == "email.send_welcome" and call["state"] == "awaiting_approval"
    alice = (await client.get(f"/api/approvals/{approval_id}", headers=service.auth("alice"))).json()
    assert alice["allowed_decisions"] == []  # a reviewer of the team without the role may look, not decide
    outsider = await client.get(f"/api/approvals/{approval_id}", headers=service.auth("maria"))
    assert outsider.status_code == 404  # another team's reviewer learns no more than of an unknown id


async def test_an_approval_binds_to_the_hash_shown_and_lets_the_call_run(
    service: Service, client: httpx.AsyncClient
) -> None:
    approval_id = service.waiting()
    shown = (await client.get(f"/api/approvals/{approval_id}", headers=service.auth("sam"))).json()
    stale = await client.post(
        f"/api/approvals/{approval_id}/decision",
        headers=service.auth("sam"),
        json={"decision": "approve", "args_hash": "0" * 64},
    )
    assert stale.status_code == 422 and "arguments" in stale.json()["detail"]
    assert service.ledger.decisions_of(approval_id) == []
    done = await client.post(
        f"/api/approvals/{approval_id}/decision",
        headers=service.auth("sam"),
        json={"decision": "approve", "args_hash": shown["args_hash"], "reason": "looks right"},
    )
    assert done.status_code == 200, done.text
    assert done.json() | {"decided_by": None} == {
        "approval_id": approval_id,
        "decision": "approve",
        "reviewer": "sam",
        "state": "approved",
        "settled": True,
        "repeat": False,
        "decided_by": None,
        "args_hash": shown["args_hash"],
        "roles": ["support"],
        "quorum": 1,
        "paused": None,
    }
    assert service.ledger.call_state(shown["call_id"]) == "approved"


async def test_a_replayed_decision_is_200_and_records_nothing_new(service: Service, client: httpx.AsyncClient) -> None:
    approval_id = service.waiting()
    record = service.ledger.get_approval(approval_id)
    assert record is not None
    body = {"decision": "reject", "reason": "wrong address", "args_hash": record.args_hash}
    first = await client.post(f"/api/approvals/{approval_id}/decision", headers=service.auth("sam"), json=body)
    events = len(service.ledger.events_of(record.run_id))
    again = await client.post(f"/api/approvals/{approval_id}/decision", headers=service.auth("sam"), json=body)
    assert first.status_code == again.status_code == 200
    assert again.json()["repeat"] is True and again.json()["state"] == "rejected"
    assert len(service.ledger.decisions_of(approval_id)) == 1
    assert len(service.ledger.events_of(record.run_id)) == events


async def test_a_decision_on_a_decided_approval_is_409_naming_who_decided(
    service: Service, client: httpx.AsyncClient
) -> None:
    approval_id = service.waiting()
    record = service.ledger.get_approval(approval_id)
    assert record is not None
    await client.post(
        f"/api/approvals/{approval_id}/decision",
        headers=service.auth("sam"),
        json={"decision": "approve", "args_hash": record.args_hash},
    )
    late = await client.post(
        f"/api/approvals/{approval_id}/decision",
        headers=service.auth("ops-lead"),
        json={"decision": "reject", "reason": "no", "args_hash": record.args_hash},
    )
    assert late.status_code == 409
    assert late.json()["code"] == "already_decided" and late.json()["decided_by"] == ["sam"]
    assert "sam" in late.json()["detail"]


async def test_an_expired_approval_is_410_and_its_call_never_runs(service: Service, client: httpx.AsyncClient) -> None:
    approval_id = service.waiting()
    record = service.ledger.get_approval(approval_id)
    assert record is not None
    with service.ledger.conns.write() as cur:  # the expiry passed (no waiting in the test)
        cur.execute("UPDATE approvals SET expires_at = ? WHERE approval_id = ?", (time.time() - 1, approval_id))
    assert (await client.get("/api/approvals", headers=service.auth("sam"))).json() == []
    body = {"decision": "approve", "args_hash": record.args_hash}
    for _ in range(2):  # the first decision records the expiry; the next finds it expired
        late = await client.post(f"/api/approvals/{approval_id}/decision", headers=service.auth("sam"), json=body)
        assert late.status_code == 410, late.text
    assert service.ledger.call_state(record.call_id) == "expired"
    assert service.ledger.decisions_of(approval_id) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "maybe", "args_hash": "x"}, "decision"),
        ({"decision": "approve"}, "args_hash"),
        ({"decision": "approve", "args_hash": "x", "extra": 1}, "extra"),
        ({"decision": "reject", "args_hash": "HASH"}, "reason"),
    ],
)
async def test_a_bad_body_is_422_with_the_reason_and_decides_nothing(
    service: Service, client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    approval_id = service.waiting()
    record = service.ledger.get_approval(approval_id)
    assert record is not None
    if body.get("args_hash") == "HASH":
        body = body | {"args_hash": record.args_hash}
    response = await client.post(f"/api/approvals/{approval_id}/decision", headers=service.auth("sam"), json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert service.ledger.decisions_of(approval_id) == []


async def test_unknown_ids_are_404(service: Service, client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/api/approvals/apr_nope"),
        ("GET", "/api/runs/run_nope"),
        ("POST", "/api/approvals/apr_nope/decision"),
    ):
        response = await client.request(
            method, path, headers=service.auth("sam"), json={"decision": "approve", "args_hash": "x"}
        )
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "not_found"


async def test_runs_are_listed_and_told_for_the_reviewers_teams_only(
    service: Service, client: httpx.AsyncClient
) -> None:
    approval_id = service.waiting()
    record = service.ledger.get_approval(approval_id)
    assert record is not None
    runs = (await client.get("/api/runs", headers=service.auth("alice"))).json()
    assert [r["run_id"] for r in runs] == [record.run_id]
    story = (await client.get(f"/api/runs/{record.run_id}", headers=service.auth("alice"))).json()
    assert story["run"]["state"] == "paused" and story["calls"][0]["call_id"] == record.call_id
    assert (await client.get("/api/runs", headers=service.auth("maria"))).json() == []
    assert (await client.get(f"/api/runs/{record.run_id}", headers=service.auth("maria"))).status_code == 404
    assert (await client.get("/api/runs?team=onboarding", headers=service.auth("maria"))).status_code == 404


async def test_health_and_the_openapi_document_need_no_token(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    doc = (await client.get("/openapi.json")).json()
    assert {
        "/api/approvals",
        "/api/approvals/{approval_id}",
        "/api/approvals/{approval_id}/decision",
        "/api/runs",
        "/api/runs/{run_id}",
        "/health",
    } <= set(doc["paths"])
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def test_a_revoked_token_is_refused_at_once(service: Service, client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/approvals", headers=service.auth("sam"))).status_code == 200
    [token] = [t for t in service.ledger.list_tokens() if t.reviewer == "sam"]
    service.ledger.revoke_token(token.token_id, by="test")
    refused = await client.get("/api/approvals", headers=service.auth("sam"))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
