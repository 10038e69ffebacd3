"""Edited arguments, quorum, self-approval and the database clock, over the real app (ASGI transport).

The team `desk` (written here): refunds need two distinct `finance` reviewers; `card_token` is a secret.
The agent is a real Guard in defer mode: it asks, the reviewers decide over HTTP, the agent calls again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from guard import ApprovalPending, Guard
from guard.canonical import REDACTED, args_hash
from guard.ledger import Ledger
from guard.server import create_app

pytestmark = pytest.mark.anyio


POLICY = """\
team: desk
secrets: [card_token]
reviewers:
  rita: [finance]
  omar: [finance]
  agent: [finance]
rules:
  - name: refunds
    tools: [billing.refund]
    class: compensable
    approval: {roles: [finance], quorum: 2, expires_after: 1h}
"""
ASKED = {"invoice_id": "inv_1", "amount_cents": 90000, "card_token": "tok_live_4242424242"}


@dataclass
class Desk:
    client: httpx.AsyncClient
    ledger: Ledger
    db: str
    policies: Path
    tokens: dict[str, str]
    refunds: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def agent(self) -> Guard:
        guard = Guard(policies=self.policies, db=self.db, actor="agent", approval="defer", log_level="error")
        guard.tool(self._refund, name="billing.refund")
        return guard

    def _refund(self, **kw: Any) -> dict[str, str]:
        self.refunds.append(kw)
        return {"refund_id": f"re_{len(self.refunds)}"}

    def ask(self, guard: Guard) -> tuple[str, str]:
        """Start a run whose refund waits; (run id, approval id)."""
        with pytest.raises(ApprovalPending) as pending, guard.run("desk") as run:
            guard.tool_named("billing.refund")(**ASKED)  # type: ignore[misc]
        return run.run_id, str(pending.value.approval_id)

    async def decide(self, who: str, approval_id: str, **body: Any) -> httpx.Response:
        return await self.client.post(f"/api/approvals/{approval_id}/decision", headers=self.auth(who), json=body)

    async def shown(self, who: str, approval_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/approvals/{approval_id}", headers=self.auth(who))
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def desk(tmp_path: Path, ledger_url: str, shared_key: None) -> AsyncIterator[Desk]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "desk.yaml").write_text(POLICY)
    db = ledger_url
    ledger = Ledger(db)
    tokens = {name: ledger.create_token(name, by="test")[1] for name in ("rita", "omar", "agent")}
    app = create_app(db, policies, session_secret=b"s" * 32)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Desk(client, ledger, db, policies, tokens)
    finally:
        app.state.desk.ledger.close()
        ledger.close()


@pytest.fixture
def agent(desk: Desk) -> Iterator[Guard]:
    guard = desk.agent()
    try:
        yield guard
    finally:
        guard.close()


def _resume(guard: Guard, run_id: str) -> Any:
    with guard.run("desk", run_id=run_id):
        return guard.tool_named("billing.refund")(**ASKED)  # type: ignore[misc]


async def test_edited_arguments_run_only_with_the_approval_of_the_edit(desk: Desk, agent: Guard) -> None:
    run_id, approval_id = desk.ask(agent)
    shown = await desk.shown("rita", approval_id)
    assert shown["args"]["card_token"] == REDACTED and shown["edited"] is False
    edited = {**shown["args"], "amount_cents": 45000}

    first = await desk.decide(
        "rita",
        approval_id,
        decision="approve",
        args_hash=shown["args_hash"],
        edited_args=edited,
        reason="half is what we owe",
    )
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "pending" and first.json()["args_hash"] == args_hash(edited)

    # omar was shown the agent's arguments: his approval of those no longer applies, and is refused.
    stale = await desk.decide("omar", approval_id, decision="approve", args_hash=shown["args_hash"])
    assert stale.status_code == 422 and "reload" in stale.json()["detail"]
    with pytest.raises(ApprovalPending):
        _resume(agent, run_id)  # one approval of the edit is not the quorum of two: nothing runs
    assert desk.refunds == []

    now = await desk.shown("omar", approval_id)
    assert now["edited"] is True and now["args"]["amount_cents"] == 45000
    assert now["requested_args"]["amount_cents"] == 90000 and now["args_hash"] == args_hash(edited)
    second = await desk.decide("omar", approval_id, decision="approve", args_hash=now["args_hash"])
    assert second.status_code == 200 and second.json()["state"] == "approved"
    assert sorted(second.json()["decided_by"]) == ["omar", "rita"]

    assert _resume(agent, run_id) == {"refund_id": "re_1"}
    # The edited amount ran, with the agent's real card token (never shown to a reviewer, never edited).
    assert desk.refunds == [{**ASKED, "amount_cents": 45000}]
    approval = desk.ledger.get_approval(approval_id)
    assert approval is not None and approval.approved_args_hash == args_hash(edited)
    assert approval.args_hash != approval.approved_args_hash  # the agent's request stays on record
    assert _resume(agent, run_id) == {"refund_id": "re_1"}  # a redelivery runs nothing again
    assert len(desk.refunds) == 1


async def test_an_approval_of_the_old_arguments_does_not_count_after_an_edit(desk: Desk, agent: Guard) -> None:
    run_id, approval_id = desk.ask(agent)
    shown = await desk.shown("rita", approval_id)
    assert (await desk.decide("omar", approval_id, decision="approve", args_hash=shown["args_hash"])).status_code == 200
    edited = {**shown["args"], "amount_cents": 1000}
    after = await desk.decide("rita", approval_id, decision="approve", args_hash=shown["args_hash"], edited_args=edited)
    # omar approved 90000, rita approved 1000: two approvals, but not two of the same arguments.
    assert after.status_code == 200 and after.json()["state"] == "pending"
    # omar may now decide again, on the edited arguments.
    assert (await desk.shown("omar", approval_id))["allowed_decisions"] == ["approve", "reject"]
    again = await desk.decide("omar", approval_id, decision="approve", args_hash=args_hash(edited))
    assert again.json()["state"] == "approved"
    assert _resume(agent, run_id) == {"refund_id": "re_1"}
    assert desk.refunds == [{**ASKED, "amount_cents": 1000}]


async def test_a_reviewer_may_revise_their_own_edit_before_the_quorum_and_only_the_last_one_runs(
    desk: Desk, agent: Guard
) -> None:
    run_id, approval_id = desk.ask(agent)
    shown = await desk.shown("rita", approval_id)
    first = {**shown["args"], "amount_cents": 45000}
    second = {**shown["args"], "amount_cents": 40000}
    assert (
        await desk.decide("rita", approval_id, decision="approve", args_hash=shown["args_hash"], edited_args=first)
    ).status_code == 200
    revised = await desk.decide("rita", approval_id, decision="approve", args_hash=args_hash(first), edited_args=second)
    assert revised.status_code == 200 and revised.json()["args_hash"] == args_hash(second)
    assert [(d.reviewer, d.args_hash) for d in desk.ledger.decisions_of(approval_id)] == [("rita", args_hash(second))]
    done = await desk.decide("omar", approval_id, decision="approve", args_hash=args_hash(second))
    assert done.json()["state"] == "approved"
    assert _resume(agent, run_id) == {"refund_id": "re_1"}
    assert desk.refunds == [{**ASKED, "amount_cents": 40000}]


async def test_quorum_counts_distinct_reviewers_and_nobody_approves_their_own_call(desk: Desk, agent: Guard) -> None:
    run_id, approval_id = desk.ask(agent)
    shown = await desk.shown("rita", approval_id)
    one = await desk.decide("rita", approval_id, decision="approve", args_hash=shown["args_hash"])
    twice = await desk.decide("rita", approval_id, decision="approve", args_hash=shown["args_hash"])
    assert one.json()["state"] == twice.json()["state"] == "pending" and twice.json()["repeat"] is True
    own = await desk.decide("agent", approval_id, decision="approve", args_hash=shown["args_hash"])
    assert own.status_code == 403 and own.json()["code"] == "self_approval"
    own_edit = await desk.decide(
        "agent",
        approval_id,
        decision="approve",
        args_hash=shown["args_hash"],
        edited_args={**shown["args"], "amount_cents": 1},
    )
    assert own_edit.status_code == 403
    assert (await desk.shown("agent", approval_id))["allowed_decisions"] == []
    assert [d.reviewer for d in desk.ledger.decisions_of(approval_id)] == ["rita"]
    with pytest.raises(ApprovalPending):
        _resume(agent, run_id)
    assert desk.refunds == []


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ('{"invoice_id": "inv_1", "amount_cents": 90000, "card_token": "tok_attacker"}', "secret"),
        ('{"invoice_id": "inv_1", "amount_cents": 1e999, "card_token": "[REDACTED]"}', "JSON"),
        ('["not", "an", "object"]', "dictionary"),
    ],
)
async def test_bad_edits_are_refused_with_a_reason_and_decide_nothing(
    desk: Desk, agent: Guard, edit: str, why: str
) -> None:
    _, approval_id = desk.ask(agent)
    shown = await desk.shown("rita", approval_id)
    body = f'{{"decision": "approve", "args_hash": "{shown["args_hash"]}", "edited_args": {edit}}}'
    response = await desk.client.post(
        f"/api/approvals/{approval_id}/decision",
        content=body,
        headers={**desk.auth("rita"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert why in response.text
    reject = await desk.decide(
        "omar",
        approval_id,
        decision="reject",
        reason="no",
        args_hash=shown["args_hash"],
        edited_args={**shown["args"], "amount_cents": 1},
    )
    assert reject.status_code == 422 and "rejection" in reject.json()["detail"]
    assert desk.ledger.decisions_of(approval_id) == []
    after = desk.ledger.get_approval(approval_id)
    assert after is not None and after.state == "pending" and after.approved_args_hash is None


async def test_expiry_is_judged_by_the_database_clock_not_the_host_clock(
    desk: Desk, agent: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, approval_id = desk.ask(agent)
    shown = await desk.shown("rita", approval_id)
    # The host's clock runs two hours ahead (the approval expires in one): the database still says it is live.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 7200)
    assert (await desk.shown("rita", approval_id))["expired"] is False
    ok = await desk.decide("rita", approval_id, decision="approve", args_hash=shown["args_hash"])
    assert ok.status_code == 200 and ok.json()["state"] == "pending"

    # The database says the expiry has passed; a host clock two hours behind does not revive it.
    with desk.ledger.conns.write() as cur:
        cur.execute("UPDATE approvals SET expires_at = expires_at - 3601 WHERE approval_id = ?", (approval_id,))
    monkeypatch.setattr(time, "time", lambda: real() - 7200)
    late = await desk.decide("omar", approval_id, decision="approve", args_hash=shown["args_hash"])
    assert late.status_code == 410 and late.json()["code"] == "expired"
    approval = desk.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "expired"
