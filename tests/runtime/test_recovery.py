"""Crash recovery and operator actions on a real ledger: calls a dead worker left `started` are resolved,
never re-run blindly; a worker that lost its lease cannot write; operators retry, compensate, finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard import (
    CallFailed,
    Found,
    Guard,
    GuardedTool,
    IllegalTransition,
    NotFound,
    ReconcileContext,
    RecoveryReport,
    RollbackContext,
    args_hash,
)
from guard.canonical import canonical_json
from guard.ledger import Beat, CallRequest, Ledger, new_id
from guard.runtime.operator import compensate, finish, retry_call
from tests.crashed import left_started

POLICY = """\
team: ops
reviewers: {oncall: [ops]}
rules:
  - {name: upsert, tools: [crm.upsert], class: idempotent}
  - {name: charge, tools: [billing.charge], class: compensable, on_failure: halt}
  - {name: refund, tools: [billing.refund], class: idempotent}
  - {name: ship, tools: [warehouse.ship], class: compensable, on_failure: halt}
"""


class Counter:
    def __init__(self) -> None:
        self.upserts = 0
        self.charges: list[str] = []
        self.refunds: list[str] = []
        self.ships = 0
        self.charge_answer: Found | NotFound | None = None
        self.ship_fails = False


@pytest.fixture
def worker(tmp_path: Path, db_path: Path) -> Iterator[tuple[Guard, Counter, dict[str, GuardedTool]]]:
    """A fresh worker with the tools registered: the process that recovers after another one died."""
    policies = tmp_path / "ops-policies"
    policies.mkdir()
    (policies / "ops.yaml").write_text(POLICY)
    guard = Guard(policies=policies, db=str(db_path), worker_id="fresh", log_level="error")
    seen = Counter()

    @guard.tool(name="crm.upsert")
    def upsert(email: str) -> dict[str, str]:
        seen.upserts += 1
        return {"contact": email}

    @guard.tool(name="billing.charge", external_ids={"charge": "charge_id"})
    def charge(amount: int) -> dict[str, str]:
        seen.charges.append(str(amount))
        return {"charge_id": f"ch_{amount}"}

    @charge.reconcile
    def find_charge(ctx: ReconcileContext) -> Found | NotFound | None:
        return seen.charge_answer

    @charge.compensation(name="billing.refund", kind="void")
    def refund(ctx: RollbackContext) -> None:
        seen.refunds.append(ctx.external_ids.get("charge", "?"))

    @guard.tool(name="warehouse.ship")
    def ship(order: str) -> None:
        seen.ships += 1
        if seen.ship_fails:
            raise RuntimeError("carrier API down")

    try:
        yield guard, seen, {"upsert": upsert, "charge": charge, "ship": ship}
    finally:
        guard.close()


def test_a_repeat_safe_call_left_started_runs_again_with_its_key(
    ledger: Ledger,
    worker: tuple[Guard, Counter, dict[str, GuardedTool]],
) -> None:
    guard, seen, _ = worker
    call_id = left_started(ledger, "r1", "crm.upsert", "idempotent", {"email": "ada@example.com"})
    report = guard.recover()
    assert (report.claimed, report.retried, report.to_review) == (1, 1, 0)
    assert seen.upserts == 1
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state == "completed" and call.lease_owner == "fresh"


@pytest.mark.parametrize("inside_a_loop", [False, True])
def test_a_repeat_safe_async_tool_left_started_runs_again_to_its_end(
    ledger: Ledger, worker: tuple[Guard, Counter, dict[str, GuardedTool]], inside_a_loop: bool
) -> None:
    guard, seen, _ = worker
    enriched: list[str] = []

    @guard.tool(name="crm.upsert")
    async def upsert_async(email: str) -> dict[str, str]:
        await asyncio.sleep(0)  # really suspends: a sync driver alone could not finish it
        enriched.append(email)
        return {"contact": email}

    call_id = left_started(ledger, "r-async", "crm.upsert", "idempotent", {"email": "ada@example.com"})

    async def from_async_code() -> RecoveryReport:
        return guard.recover()  # e.g. the first `guard.run` of a worker opened inside an event loop

    report = asyncio.run(from_async_code()) if inside_a_loop else guard.recover()
    assert (report.claimed, report.retried) == (1, 1)
    assert enriched == ["ada@example.com"] and seen.upserts == 0
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state == "completed"


def test_a_compensable_call_left_started_is_found_by_its_reconcile_check_and_not_run_again(
    ledger: Ledger,
    worker: tuple[Guard, Counter, dict[str, GuardedTool]],
) -> None:
    guard, seen, _ = worker
    seen.charge_answer = Found(result={"charge_id": "ch_900"}, external_ids={"charge": "ch_900"})
    call_id = left_started(ledger, "r2", "billing.charge", "compensable", {"amount": 900})
    report = guard.recover()
    assert (report.reconciled, report.ran_once) == (1, 0)
    assert seen.charges == []  # never re-run: the effect was already there
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state == "completed" and call.external_id_map == {"charge": "ch_900"}
    states = [s for e in guard.ledger.events_of("r2") if e.call_id == call_id and e.entity == "call" for s in e.path]
    assert states == ["offered", "approved", "started", "in_doubt", "in_doubt", "completed"][: len(states)] or states[
        -2:
    ] == ["in_doubt", "completed"]


def test_a_call_confirmed_absent_runs_exactly_once(
    ledger: Ledger, worker: tuple[Guard, Counter, dict[str, GuardedTool]]
) -> None:
    guard, seen, _ = worker
    seen.charge_answer = NotFound()
    call_id = left_started(ledger, "r3", "billing.charge", "compensable", {"amount": 5})
    report = guard.recover()
    assert (report.reconciled, report.ran_once) == (1, 1)
    assert seen.charges == ["5"]
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state == "completed"
    assert guard.recover().claimed == 0  # a second recovery finds nothing left to do


def test_a_call_whose_outcome_nobody_can_tell_goes_to_review_and_never_runs(
    ledger: Ledger,
    worker: tuple[Guard, Counter, dict[str, GuardedTool]],
) -> None:
    guard, seen, _ = worker
    seen.charge_answer = None
    call_id = left_started(ledger, "r4", "billing.charge", "compensable", {"amount": 7})
    report = guard.recover()
    assert report.to_review == 1 and "could not tell" in report.notes[0]
    assert seen.charges == []
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state == "in_doubt"
    run = guard.ledger.get_run("r4")
    assert run is not None and (run.state, run.status_label) == ("pending_review", "billing_charge_in_doubt")
    # Its lease was let go for the next pass or an operator: a change of the call's row that verify must know of.
    assert call.lease_expires_at is None
    report = guard.ledger.verify_chain()
    assert report.ok, report.problem


def test_a_live_lease_is_not_taken_over_unless_its_worker_is_declared_dead(
    ledger: Ledger,
    worker: tuple[Guard, Counter, dict[str, GuardedTool]],
) -> None:
    guard, seen, _ = worker
    call_id = left_started(ledger, "r5", "crm.upsert", "idempotent", {"email": "x@y"}, ttl=60.0)
    assert guard.recover().claimed == 0
    assert seen.upserts == 0
    assert guard.recover(stale_after=0.0).claimed == 1
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state == "completed"


def test_a_worker_that_lost_its_lease_cannot_complete_or_heartbeat_the_call(
    ledger: Ledger,
    worker: tuple[Guard, Counter, dict[str, GuardedTool]],
) -> None:
    guard, _, _ = worker
    ledger.open_run("r6", "ops", actor="agent")
    call_id = left_started(ledger, "r6", "warehouse.ship", "compensable", {"order": "o1"}, ttl=60.0)
    zombie_token = 1
    call = guard.ledger.get_call(call_id)
    assert call is not None
    new_token = ledger.claim(call, worker="fresh", ttl=30.0, actor="recovery", to=None)
    assert new_token == zombie_token + 1
    assert ledger.heartbeat(call_id, zombie_token, 30.0).beat is Beat.TAKEN_OVER
    with pytest.raises(IllegalTransition) as fenced:
        ledger.complete(
            "r6", call_id, token=zombie_token, result_json="null", external_ids={}, attempts=1, actor="zombie"
        )
    assert fenced.value.entity == "lease"
    ledger.complete("r6", call_id, token=new_token, result_json="null", external_ids={}, attempts=1, actor="fresh")
    after = guard.ledger.get_call(call_id)
    assert after is not None and after.state == "completed"


def test_an_operator_retries_a_failed_call_compensates_and_finishes_with_notes(
    ledger: Ledger,
    worker: tuple[Guard, Counter, dict[str, GuardedTool]],
) -> None:
    guard, seen, tools = worker
    seen.ship_fails = True
    with guard.run("ops", source_event_id="order-1") as run, pytest.raises(CallFailed, match="carrier"):
        tools["charge"](amount=42)
        tools["ship"](order="o-1")
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and record.state == "pending_review"
    ship_call = next(c for c in guard.ledger.calls_of(run.run_id) if c.tool == "warehouse.ship")

    with pytest.raises(IllegalTransition):
        finish(ledger, run.run_id, operator="oncall", note="   ")  # a note is required
    retry_call(
        guard,
        run.run_id,
        ship_call.call_id,
        operator="oncall",
        note="carrier is back: no shipment",
        confirmed_absent=True,
    )
    assert seen.ships == 2
    again = guard.ledger.get_call(ship_call.call_id)
    assert again is not None and again.state == "failed"  # still down: recorded, run back to review
    outcome = compensate(guard, run.run_id, operator="oncall", note="customer cancelled the order")
    assert seen.refunds == ["ch_42"] and outcome.remains == []
    final = guard.ledger.get_run(run.run_id)
    assert final is not None and final.state == "rolled_back"
    # the run still names the situation and the failure that started it, not the operator's pass
    assert final.status_label == "billing_charged_warehouse_failed"
    assert final.error_summary is not None and final.error_summary.startswith("warehouse.ship failed")
    assert "Undone: #1 billing.charge" in final.error_summary
    actions = [(m.action, m.operator) for m in guard.ledger.manual_actions_of(run.run_id)]
    assert actions == [("retry-call --confirmed-absent", "oncall"), ("compensate", "oncall")]
    assert guard.ledger.verify_chain().ok


def test_a_run_finished_by_hand_is_recorded_finished_by_hand_with_its_note_never_completed(
    ledger: Ledger,
    worker: tuple[Guard, Counter, dict[str, GuardedTool]],
) -> None:
    guard, seen, _ = worker
    seen.charge_answer = None
    left_started(ledger, "r7", "billing.charge", "compensable", {"amount": 1})
    guard.recover()
    run = finish(ledger, "r7", operator="oncall", note="checked the processor: no charge; closing")
    assert (run.state, run.status_label) == ("finished_by_hand", "billing_charge_in_doubt")
    assert not run.requires_review
    [close] = [e for e in guard.ledger.events_of("r7") if e.entity == "run" and e.to_state == "finished_by_hand"]
    assert (close.from_state, close.actor) == ("pending_review", "oncall")
    [action] = guard.ledger.manual_actions_of("r7")
    assert (action.action, action.note) == ("finish", "checked the processor: no charge; closing")
    assert time.time() >= action.at


def test_a_worker_recovers_expired_leases_before_its_first_run(
    ledger: Ledger,
    worker: tuple[Guard, Counter, dict[str, GuardedTool]],
) -> None:
    guard, seen, _ = worker
    call_id = left_started(ledger, "r8", "crm.upsert", "idempotent", {"email": "late@example.com"})
    with guard.run("ops", source_event_id="next-event"):
        pass
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state == "completed" and seen.upserts == 1
    with guard.run("ops", source_event_id="another-event"):
        pass
    assert seen.upserts == 1  # once per worker, not per run


def test_a_repeat_safe_call_that_runs_with_a_reviewers_edit_is_reconciled_not_run_again_blindly(
    ledger: Ledger,
    worker: tuple[Guard, Counter, dict[str, GuardedTool]],
) -> None:
    """An approved edit is judged on its own and may be of another class than the call row records: recovery
    never re-runs such a call blindly, whatever the row says."""
    from guard.runtime.review import review

    guard, seen, _ = worker
    ledger.open_run("r-edit", "ops", actor="agent")
    args = {"email": "ada@example.com"}
    call_id = new_id("call")
    request = CallRequest(
        call_id=call_id,
        run_id="r-edit",
        team="ops",
        tool="crm.upsert",
        args_json=canonical_json(args).decode(),
        args_hash=args_hash(args),
        idempotency_key=f"k:{call_id}",
        verdict="approve",
        side_effect="idempotent",
        rule="upsert",
        reason="",
        policy_version="v",
        actor="agent",
        worker="dead",
        lease_ttl=0.0,
        approval_roles=("ops",),
        quorum=1,
    )
    offer = ledger.offer(request)
    assert offer.kind == "awaiting" and offer.approval_id is not None
    review(
        ledger,
        guard.policies,
        offer.approval_id,
        reviewer="oncall",
        decision="approve",
        edited_args={"email": "grace@example.com"},
    )
    resumed = ledger.offer(request)  # the dead worker took the approved edit to `started`, then died
    assert resumed.kind == "started"

    report = guard.recover()
    assert report.retried == 0 and seen.upserts == 0  # not run again on the row's word that it is repeat-safe
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state != "started"
