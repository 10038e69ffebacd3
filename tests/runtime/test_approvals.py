"""Human approval: the agent blocks or defers; decisions are bound to roles, quorum, expiry and the asker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from runtime_support import Agent, Driver, Recorder, call_events

from guard import (
    ApprovalDecisionError,
    ApprovalExpired,
    ApprovalPending,
    ApprovalTimeout,
    CallOutcomeError,
    CallRejected,
    Guard,
    GuardedTool,
    RunNotRunning,
)
from guard.ledger import ApprovalRecord, Ledger
from guard.testing import poll

TEAM = "onboarding"
BIG = {"customer_id": "cust-1", "amount_cents": 60000}
FINANCE = frozenset({"finance"})


def blocking_agent(
    driver: Driver, guard: Guard, tool: GuardedTool, team: str, args: dict[str, Any], run_ids: list[str]
) -> Agent:
    def work() -> Any:
        with driver.run(guard, team) as run:
            run_ids.append(run.run_id)
            return run.call(tool, **args)

    agent = Agent(work)
    agent.start()
    return agent


def waiting_approval(guard: Guard, agent: Agent, team: str = TEAM) -> ApprovalRecord:
    """The one approval the agent is blocked on, once the ledger shows it."""

    def shown() -> list[ApprovalRecord]:
        if not agent.is_alive():
            raise AssertionError(f"the agent stopped before its approval showed: {agent.error!r}")
        return guard.ledger.list_approvals(team=team)

    [approval] = poll(shown)
    assert guard.ledger.call_state(approval.call_id) == "awaiting_approval"
    return approval


def test_a_blocked_agent_runs_the_call_exactly_once_after_a_reviewer_approves(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval_timeout=30)
    body = Recorder(result={"invoice_id": "inv-1"})
    tool = driver.tool(guard, body, name="billing.create_invoice")
    run_ids: list[str] = []
    agent = blocking_agent(driver, guard, tool, TEAM, BIG, run_ids)

    approval = waiting_approval(guard, agent)
    assert body.calls == []
    run_record = guard.ledger.get_run(approval.run_id)
    assert run_record is not None and run_record.state == "paused"
    decided = ledger.decide(
        approval.approval_id,
        reviewer="alice",
        decision="approve",
        reviewer_roles=FINANCE,
        shown_args_hash=approval.args_hash,
    )
    assert decided.settled

    agent.finish()
    assert agent.error is None and agent.result == {"invoice_id": "inv-1"}
    assert body.calls == [BIG]
    call = guard.ledger.get_call(approval.call_id)
    assert call is not None and call.state == "completed"
    assert [s for e in call_events(ledger, approval.run_id, call.call_id) for s in e.path] == [
        "offered",
        "awaiting_approval",
        "approved",
        "started",
        "completed",
    ]
    run_record = guard.ledger.get_run(run_ids[0])
    assert run_record is not None and run_record.state == "completed"


def test_a_rejection_reaches_the_blocked_agent_as_call_rejected_with_the_reason(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval_timeout=30)
    body = Recorder()
    tool = driver.tool(guard, body, name="billing.create_invoice")
    agent = blocking_agent(driver, guard, tool, TEAM, BIG, [])

    approval = waiting_approval(guard, agent)
    ledger.decide(
        approval.approval_id,
        reviewer="alice",
        decision="reject",
        reviewer_roles=FINANCE,
        reason="customer is on a free plan",
    )

    agent.finish()
    assert isinstance(agent.error, CallRejected)
    assert agent.error.reason == "customer is on a free plan"
    assert agent.error.call_id == approval.call_id
    assert body.calls == []
    assert guard.ledger.call_state(approval.call_id) == "rejected"


@pytest.mark.parametrize(
    ("reviewer", "roles", "code"),
    [
        ("agent", FINANCE, "self_approval"),
        ("sam", frozenset({"support"}), "forbidden"),
    ],
)
def test_a_decision_by_the_asker_or_without_the_role_is_refused_and_changes_nothing(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard], reviewer: str, roles: frozenset[str], code: str
) -> None:
    guard = make_guard(approval="defer")
    assert guard.actor == "agent"
    body = Recorder()
    tool = driver.tool(guard, body, name="billing.create_invoice")
    with driver.run(guard, TEAM) as run, pytest.raises(ApprovalPending) as pending:
        run.call(tool, **BIG)

    with pytest.raises(ApprovalDecisionError) as refused:
        ledger.decide(pending.value.approval_id, reviewer=reviewer, decision="approve", reviewer_roles=roles)
    assert refused.value.code == code
    approval = guard.ledger.get_approval(pending.value.approval_id)
    assert approval is not None and approval.state == "pending"
    assert guard.ledger.decisions_of(approval.approval_id) == []
    assert body.calls == []


def test_a_quorum_of_two_needs_two_distinct_reviewers_before_the_call_runs(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval_timeout=30)
    body = Recorder(result={"wire_id": "w-1"})
    tool = driver.tool(guard, body, name="lab.wire_money")
    agent = blocking_agent(driver, guard, tool, "lab", {"amount_cents": 5}, [])

    approval = waiting_approval(guard, agent, "lab")
    first = ledger.decide(approval.approval_id, reviewer="alice", decision="approve", reviewer_roles=FINANCE)
    again = ledger.decide(approval.approval_id, reviewer="alice", decision="approve", reviewer_roles=FINANCE)
    assert not first.settled and again.repeat
    assert guard.ledger.call_state(approval.call_id) == "awaiting_approval"
    assert body.calls == []

    second = ledger.decide(approval.approval_id, reviewer="bob", decision="approve", reviewer_roles=FINANCE)
    assert second.settled

    agent.finish()
    assert agent.error is None and agent.result == {"wire_id": "w-1"}
    assert len(body.calls) == 1
    settled = guard.ledger.get_approval(approval.approval_id)
    assert settled is not None and settled.state == "approved"
    assert sorted(r.reviewer for r in guard.ledger.decisions_of(approval.approval_id)) == ["alice", "bob"]


def test_a_decision_after_the_expiry_is_refused_and_the_call_ends_expired(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval="defer")
    body = Recorder()
    tool = driver.tool(guard, body, name="lab.flash_sale")
    with driver.run(guard, "lab") as run, pytest.raises(ApprovalPending) as pending:
        run.call(tool, sku="sku-1")
    expires_at = pending.value.expires_at
    assert expires_at - time.time() < 0.06
    while ledger.database_time() < expires_at:  # expiry is an instant of the database clock: spin past it
        pass

    with pytest.raises(ApprovalDecisionError) as refused:
        ledger.decide(pending.value.approval_id, reviewer="alice", decision="approve", reviewer_roles=FINANCE)
    assert refused.value.code == "expired"
    approval = guard.ledger.get_approval(pending.value.approval_id)
    assert approval is not None and approval.state == "expired"
    assert guard.ledger.call_state(pending.value.call_id) == "expired"
    assert body.calls == []


def test_a_blocked_agent_whose_approval_expires_gets_approval_expired_and_nothing_runs(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval_timeout=30)
    body = Recorder()
    tool = driver.tool(guard, body, name="lab.flash_sale")
    with driver.run(guard, "lab") as run:
        with pytest.raises(ApprovalExpired) as expired:
            run.call(tool, sku="sku-1")
        run_record = guard.ledger.get_run(run.run_id)
        assert run_record is not None and run_record.state == "running"  # unpaused
    assert body.calls == []
    assert expired.value.call_id is not None
    assert guard.ledger.call_state(expired.value.call_id) == "expired"
    assert guard.ledger.list_approvals(team="lab") == []


def test_a_deferred_call_resumes_in_a_new_run_block_and_runs_exactly_once_after_approval(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval="defer")
    body = Recorder(result={"invoice_id": "inv-1"})
    tool = driver.tool(guard, body, name="billing.create_invoice")
    with driver.run(guard, TEAM) as run, pytest.raises(ApprovalPending) as pending:
        run.call(tool, **BIG)
    run_id = run.run_id
    assert pending.value.run_id == run_id
    approval = guard.ledger.get_approval(pending.value.approval_id)
    assert approval is not None and approval.call_id == pending.value.call_id
    run_record = guard.ledger.get_run(run_id)
    assert run_record is not None and run_record.state == "paused"

    with driver.run(guard, TEAM, run_id=run_id) as again, pytest.raises(ApprovalPending):
        again.call(tool, **BIG)  # still undecided: the same approval, not a second one
    assert [a.approval_id for a in guard.ledger.list_approvals(team=TEAM)] == [approval.approval_id]

    ledger.decide(approval.approval_id, reviewer="alice", decision="approve", reviewer_roles=FINANCE)
    with driver.run(guard, TEAM, run_id=run_id) as resumed:
        assert resumed.call(tool, **BIG) == {"invoice_id": "inv-1"}

    assert body.calls == [BIG]
    [call] = guard.ledger.calls_of(run_id)
    assert call.call_id == pending.value.call_id and call.state == "completed"
    states = [s for e in call_events(ledger, run_id, call.call_id) for s in e.path]
    assert states.count("offered") == 1
    run_record = guard.ledger.get_run(run_id)
    assert run_record is not None and run_record.state == "completed"


def test_a_blocking_wait_that_runs_out_raises_approval_timeout_and_the_approval_stands(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval_timeout=0.05)
    body = Recorder(result={"invoice_id": "inv-1"})
    tool = driver.tool(guard, body, name="billing.create_invoice")
    with driver.run(guard, TEAM) as run:
        with pytest.raises(ApprovalTimeout) as timeout:
            run.call(tool, **BIG)
        [approval] = guard.ledger.list_approvals(team=TEAM)
        assert approval.approval_id == timeout.value.approval_id
        assert timeout.value.call_id is not None
        assert guard.ledger.call_state(timeout.value.call_id) == "awaiting_approval"
        assert body.calls == []

        ledger.decide(approval.approval_id, reviewer="alice", decision="approve", reviewer_roles=FINANCE)
        assert run.call(tool, **BIG) == {"invoice_id": "inv-1"}  # calling again picks the decision up
    assert len(body.calls) == 1


def test_after_approval_timeout_leaves_the_run_block_the_run_can_resume_with_the_same_call(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval_timeout=0.05)
    body = Recorder(result={"invoice_id": "inv-1"})
    tool = driver.tool(guard, body, name="billing.create_invoice")
    with pytest.raises(ApprovalTimeout) as timeout, driver.run(guard, TEAM) as run:
        run.call(tool, **BIG)  # the timeout leaves the run block, as an uncaught ApprovalPending would
    ledger.decide(timeout.value.approval_id, reviewer="alice", decision="approve", reviewer_roles=FINANCE)
    try:
        with driver.run(guard, TEAM, run_id=run.run_id) as resumed:
            assert resumed.call(tool, **BIG) == {"invoice_id": "inv-1"}
    except RunNotRunning as exc:
        raise AssertionError(f"the timed-out run cannot be resumed: {exc}") from exc
    assert len(body.calls) == 1


@pytest.mark.parametrize(("decision", "outcome"), [("reject", CallRejected), ("expire", ApprovalExpired)])
def test_a_deferred_call_offered_again_after_its_refusal_gets_the_same_typed_outcome_as_a_blocked_one(
    ledger: Ledger, make_guard: Callable[..., Guard], decision: str, outcome: type[Exception]
) -> None:
    guard = make_guard(approval="defer")
    body = Recorder(result={"invoice_id": "inv-1"})
    tool = guard.tool(body, name="billing.create_invoice")
    with guard.run(TEAM) as run, pytest.raises(ApprovalPending) as pending:
        tool.call_with(BIG, call_id="agent-call-7")
    if decision == "reject":
        ledger.decide(
            pending.value.approval_id,
            reviewer="alice",
            decision="reject",
            reviewer_roles=FINANCE,
            reason="wrong customer",
        )
    else:
        with ledger.conns.connection() as conn:
            conn.execute("UPDATE approvals SET expires_at = 0 WHERE approval_id = ?", (pending.value.approval_id,))
        assert ledger.expire_if_due(pending.value.approval_id)
    with guard.run(TEAM, run_id=run.run_id), pytest.raises(outcome) as again:
        tool.call_with(BIG, call_id="agent-call-7")  # a framework resuming the same tool call
    assert isinstance(again.value, CallOutcomeError) and again.value.call_id == "agent-call-7"
    assert body.calls == []
