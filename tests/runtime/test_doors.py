"""Guard's doors onto its ledger: what adapters and scripts read, and a reviewer's decision judged by the policy."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from runtime_support import Driver, Recorder

from guard import ApprovalDecisionError, ApprovalPending, Guard

TEAM = "onboarding"
BIG = {"customer_id": "cust-1", "amount_cents": 60000}


def test_a_decision_through_guard_counts_only_with_the_role_the_policy_gives_the_reviewer_now(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval="defer")
    body = Recorder(result={"invoice_id": "inv-1"})
    tool = driver.tool(guard, body, name="billing.create_invoice")
    with driver.run(guard, TEAM) as run, pytest.raises(ApprovalPending) as pending:
        run.call(tool, **BIG)
    [approval] = guard.approvals(team=TEAM)
    assert approval.approval_id == pending.value.approval_id

    with pytest.raises(ApprovalDecisionError) as refused:  # sam reviews for support; big invoices need finance
        guard.decide(approval.approval_id, reviewer="sam", decision="approve")
    assert refused.value.code == "forbidden"
    assert guard.approvals(team=TEAM) == [approval] and body.calls == []

    decided = guard.decide(approval.approval_id, reviewer="alice", decision="approve", reason="checked the amount")
    assert decided.settled and decided.approval.state == "approved"
    assert guard.approvals(team=TEAM) == []
    assert [a.approval_id for a in guard.approvals(team=TEAM, state=None)] == [approval.approval_id]
    with driver.run(guard, TEAM, run_id=run.run_id) as resumed:
        assert resumed.call(tool, **BIG) == {"invoice_id": "inv-1"}
    assert body.calls == [BIG]


def test_a_decision_through_guard_on_an_unknown_approval_is_refused_as_not_found(
    make_guard: Callable[..., Guard],
) -> None:
    guard = make_guard()
    with pytest.raises(ApprovalDecisionError) as refused:
        guard.decide("apr-missing", reviewer="alice", decision="reject", reason="no such thing")
    assert refused.value.code == "not_found"


def test_a_runs_calls_and_trail_read_back_through_guard_as_the_ledger_holds_them(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    tool = driver.tool(guard, Recorder(result={"contact_id": "c-1"}), name="crm.find_contact")
    with driver.run(guard, TEAM) as run:
        run.call(tool, email="ann@example.com")

    [call] = guard.calls_of(run.run_id)
    assert call.tool == "crm.find_contact" and call.state == "completed"
    assert guard.call_record(call.call_id) == call
    record = guard.run_record(run.run_id)
    assert record is not None and record.state == "completed"
    trail = guard.events_of(run.run_id)
    assert [s for e in trail if e.call_id == call.call_id for s in e.path][-1] == "completed"
    assert guard.calls_of("no-such-run") == [] and guard.events_of("no-such-run") == []
