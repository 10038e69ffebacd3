"""Approval decisions: one winner per approval, reasons required, bound to the arguments the reviewer saw."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Literal

import pytest
from ledger_support import AGENT, TEAM, request

from guard.errors import ApprovalDecisionError
from guard.ledger import DecisionResult, Ledger
from guard.ledger.signals import Watch

FINANCE = frozenset({"finance"})


@pytest.fixture
def approval_id(ledger: Ledger) -> str:
    ledger.open_run("r", TEAM, actor=AGENT)
    offer = ledger.offer(request("r", verdict="approve", key="k"))
    assert offer.approval_id is not None
    return offer.approval_id


def test_two_reviewers_deciding_at_the_same_instant_leave_exactly_one_winner(ledger: Ledger, approval_id: str) -> None:
    barrier = threading.Barrier(2)
    outcomes: dict[str, DecisionResult | ApprovalDecisionError] = {}

    def decide(reviewer: str, decision: Literal["approve", "reject"]) -> None:
        barrier.wait()
        try:
            outcomes[reviewer] = ledger.decide(
                approval_id, reviewer=reviewer, decision=decision, reviewer_roles=FINANCE, reason="looked at it"
            )
        except ApprovalDecisionError as exc:
            outcomes[reviewer] = exc

    threads = [
        threading.Thread(target=decide, args=("alice", "approve")),
        threading.Thread(target=decide, args=("bob", "reject")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    winners = [r for r, o in outcomes.items() if isinstance(o, DecisionResult) and o.settled]
    losers = [o for o in outcomes.values() if isinstance(o, ApprovalDecisionError)]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].code == "already_decided"
    approval = ledger.get_approval(approval_id)
    assert approval is not None
    assert approval.state == ("approved" if winners == ["alice"] else "rejected")
    assert [d.reviewer for d in ledger.decisions_of(approval_id)] == winners
    assert ledger.verify_chain().ok


def test_a_rejection_without_a_reason_is_refused_as_invalid(ledger: Ledger, approval_id: str) -> None:
    with pytest.raises(ApprovalDecisionError) as info:
        ledger.decide(approval_id, reviewer="alice", decision="reject", reviewer_roles=FINANCE, reason="  ")
    assert info.value.code == "invalid"
    approval_record = ledger.get_approval(approval_id)
    assert approval_record is not None and approval_record.state == "pending"


def test_a_decision_on_arguments_other_than_the_waiting_ones_is_refused_as_invalid(
    ledger: Ledger, approval_id: str
) -> None:
    with pytest.raises(ApprovalDecisionError) as info:
        ledger.decide(
            approval_id,
            reviewer="alice",
            decision="approve",
            reviewer_roles=FINANCE,
            shown_args_hash="sha256:" + "0" * 64,
        )
    assert info.value.code == "invalid"
    assert ledger.decisions_of(approval_id) == []


def test_a_settled_approval_names_who_settled_it_when_someone_else_decides_later(
    ledger: Ledger, approval_id: str
) -> None:
    ledger.decide(approval_id, reviewer="alice", decision="approve", reviewer_roles=FINANCE)
    with pytest.raises(ApprovalDecisionError) as info:
        ledger.decide(approval_id, reviewer="bob", decision="reject", reviewer_roles=FINANCE, reason="too late")
    assert info.value.code == "already_decided"
    assert "alice" in str(info.value)


def test_a_withdrawn_approval_ends_its_call_expired_with_the_reason_and_cannot_be_decided(
    ledger: Ledger, approval_id: str
) -> None:
    assert ledger.withdraw(approval_id, reason="superseded: the tool changed", actor="guard-mcp") is True
    assert ledger.withdraw(approval_id, reason="again", actor="guard-mcp") is False  # only a pending one
    approval = ledger.get_approval(approval_id)
    assert approval is not None and (approval.state, approval.reason) == ("expired", "superseded: the tool changed")
    assert ledger.call_state(approval.call_id) == "expired"
    with pytest.raises(ApprovalDecisionError) as late:
        ledger.decide(approval_id, reviewer="alice", decision="approve", reviewer_roles=frozenset({"finance"}))
    assert late.value.code == "already_decided"


def test_withdrawing_an_approved_call_that_has_not_started_ends_it_and_keeps_the_approval_as_given(
    ledger: Ledger, approval_id: str
) -> None:
    ledger.decide(approval_id, reviewer="alice", decision="approve", reviewer_roles=frozenset({"finance"}))
    approval = ledger.get_approval(approval_id)
    assert approval is not None and ledger.call_state(approval.call_id) == "approved"

    assert ledger.withdraw(approval_id, reason="superseded: the tool changed", actor="guard-mcp") is True
    assert ledger.withdraw(approval_id, reason="again", actor="guard-mcp") is False  # nothing left to end
    after = ledger.get_approval(approval_id)
    assert after is not None and after.state == "approved"  # what the reviewer did stands in the record
    call = ledger.get_call(approval.call_id)
    assert call is not None and (call.state, call.reason) == ("expired", "superseded: the tool changed")
    assert call.idempotency_key is None  # released: a new offer of the same action may ask again
    run = ledger.get_run(approval.run_id)
    assert run is not None and run.state == "running"
    assert ledger.verify_chain().ok


@pytest.mark.sqlite_only
def test_a_decision_committed_in_another_process_moves_the_wake_file_a_waiting_agent_watches(
    ledger: Ledger, approval_id: str
) -> None:
    watch = Watch(ledger.url)
    assert not watch.moved()
    script = (
        "import sys; from guard.ledger import Ledger; Ledger(sys.argv[1]).decide(sys.argv[2], "
        "reviewer='alice', decision='approve', reviewer_roles=frozenset({'finance'}))"
    )
    subprocess.run([sys.executable, "-c", script, ledger.url, approval_id], check=True, timeout=60)

    assert watch.moved()  # the decider's commit returned before it exited: the agent looks at the ledger now
    assert not watch.moved()  # and only once per change
    approval = ledger.get_approval(approval_id)
    assert approval is not None and ledger.call_state(approval.call_id) == "approved"
