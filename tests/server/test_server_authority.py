"""Authority over a real uvicorn server on loopback: every state-changing route, every wrong identity, races."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from server_figures import FIGURES
from server_support import Service

# Who must not decide an approval of onboarding's `support` role asked by `sam`, and the status they get.
WRONG: dict[str, tuple[dict[str, str] | str, int]] = {
    "no credentials": ({}, 401),
    "bad token": ({"Authorization": "Bearer gtk_not-a-real-token"}, 401),
    "another team's reviewer": ("maria", 404),  # the answer to an unknown id: no existence oracle
    "a reviewer without the role": ("alice", 403),
    "the requester": ("sam", 403),
}


def state_changing_routes(url: str) -> list[tuple[str, str]]:
    doc = httpx.get(f"{url}/openapi.json").json()
    return [
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method in ops
        if method in ("post", "put", "patch", "delete")
    ]


def test_every_state_changing_route_refuses_every_wrong_identity_and_nothing_is_decided(
    service: Service, live_url: str
) -> None:
    routes = [r for r in state_changing_routes(live_url) if "{approval_id}" in r[1]]  # pauses: test_server_pauses
    assert ("POST", "/api/approvals/{approval_id}/decision") in routes
    approval_id = service.waiting(actor="sam")  # sam holds `support`: only self-approval stops him
    record = service.ledger.get_approval(approval_id)
    assert record is not None
    events_before = len(service.ledger.events_of(record.run_id))
    with httpx.Client(base_url=live_url) as http:
        for method, path in routes:
            for who, (identity, status) in WRONG.items():
                headers = service.auth(identity) if isinstance(identity, str) else identity
                for decision in (
                    {"decision": "approve", "args_hash": record.args_hash},
                    {"decision": "reject", "reason": "no", "args_hash": record.args_hash},
                ):
                    response = http.request(
                        method, path.format(approval_id=approval_id), headers=headers, json=decision
                    )
                    FIGURES["requests tried"] += 1
                    FIGURES["5xx"] += response.status_code >= 500
                    FIGURES["unauthorized decisions"] += response.status_code < 400
                    assert response.status_code == status, (who, method, path, response.text)
    after = service.ledger.get_approval(approval_id)
    assert after is not None and after.state == "pending"
    assert service.ledger.decisions_of(approval_id) == []
    assert len(service.ledger.events_of(record.run_id)) == events_before


def test_two_reviewers_deciding_at_the_same_instant_over_http_leave_exactly_one_winner(
    service: Service, live_url: str
) -> None:
    rounds = 8
    for _ in range(rounds):
        approval_id = service.waiting()
        record = service.ledger.get_approval(approval_id)
        assert record is not None
        barrier = threading.Barrier(2)
        results: dict[str, httpx.Response] = {}

        def decide(
            reviewer: str,
            body: dict[str, Any],
            aid: str = approval_id,
            barrier: threading.Barrier = barrier,
            results: dict[str, httpx.Response] = results,
        ) -> None:
            with httpx.Client(base_url=live_url) as http:
                barrier.wait()
                results[reviewer] = http.post(
                    f"/api/approvals/{aid}/decision", headers=service.auth(reviewer), json=body
                )

        threads = [
            threading.Thread(target=decide, args=("sam", {"decision": "approve", "args_hash": record.args_hash})),
            threading.Thread(
                target=decide,
                args=("ops-lead", {"decision": "reject", "reason": "race", "args_hash": record.args_hash}),
            ),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        statuses = sorted(r.status_code for r in results.values())
        FIGURES["races tried"] += 1
        FIGURES["5xx"] += sum(s >= 500 for s in statuses)
        decisions = service.ledger.decisions_of(approval_id)
        FIGURES["double decisions"] += len(decisions) > 1
        assert statuses == [200, 409], [r.text for r in results.values()]
        [winner] = [name for name, r in results.items() if r.status_code == 200]
        [loser] = [r for r in results.values() if r.status_code == 409]
        assert loser.json()["decided_by"] == [winner]
        assert [d.reviewer for d in decisions] == [winner]
        after = service.ledger.get_approval(approval_id)
        assert after is not None and after.state == ("approved" if winner == "sam" else "rejected")
        assert service.ledger.call_state(record.call_id) == after.state
