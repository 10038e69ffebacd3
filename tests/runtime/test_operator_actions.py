"""Operator actions are as safe as the agent's own path, on a real ledger: a retry of a call that is not
repeat-safe is reconciled first (money never moves twice), a run whose reasons for review are settled moves
on, and a run finished by hand says so.

The other system is `Billing`: it keeps each charge under the idempotency key Guard passed, counts every time
its charge endpoint was called, and has a look-up by key (the tool's reconcile check) that can be down.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guard import (
    CallFailed,
    CallInDoubt,
    Found,
    Guard,
    GuardedTool,
    NotFound,
    PolicySet,
    ReconcileContext,
    current_call,
    report_external_id,
)
from guard.ledger import Ledger
from guard.runtime.operator import retry_call
from tests.crashed import dead_pid, left_started

POLICY = """\
team: pay
reviewers: {oncall: [ops]}
rules:
  - {name: charge, tools: [billing.charge], class: compensable, on_failure: halt, retry: {timeout: 50ms}}
  - {name: ship, tools: [warehouse.ship], class: compensable, on_failure: halt}
"""


class Billing:
    """A billing system whose charge answers too late while `hang` is set (the effect lands all the same)."""

    def __init__(self) -> None:
        self.charges: dict[str, str] = {}  # idempotency key -> charge id: the effects
        self.invocations = 0
        self.lookup_up = True
        self.unknown: set[str] = set()  # keys the look-up cannot answer for
        self.hang = True
        self.release = threading.Event()
        self.keys: list[str | None] = []
        self.reported: str | None = None  # an id the tool reports while it runs

    def charge(self, amount: int) -> dict[str, Any]:
        self.invocations += 1
        scope = current_call()
        key = scope.idempotency_key if scope is not None else None
        self.keys.append(key)
        self.charges[key or "?"] = f"ch_{len(self.charges) + 1}"
        if self.reported is not None:
            report_external_id("charge", self.reported)
        if self.hang:
            self.release.wait(10)  # the response does not come back within the attempt's timeout
        return {"charge_id": self.charges[key or "?"], "amount": amount}

    def find(self, ctx: ReconcileContext) -> Found | NotFound | None:
        if not self.lookup_up or ctx.idempotency_key in self.unknown:
            return None
        found = self.charges.get(ctx.idempotency_key or "")
        return Found(result={"charge_id": found}, external_ids={"charge": found}) if found else NotFound()


@pytest.fixture
def pay(tmp_path: Path, ledger_url: str) -> Iterator[tuple[Guard, Billing, dict[str, GuardedTool]]]:
    policies = tmp_path / "pay-policies"
    policies.mkdir()
    (policies / "pay.yaml").write_text(POLICY)
    guard = Guard(policies=policies, db=ledger_url, worker_id="w1", log_level="error")
    billing = Billing()
    shipped: list[str] = []
    charge = guard.tool(billing.charge, name="billing.charge", external_ids={"charge": "charge_id"})
    charge.reconcile(billing.find)

    @guard.tool(name="warehouse.ship")
    def ship(order: str) -> dict[str, str]:
        shipped.append(order)
        return {"order": order}

    try:
        yield guard, billing, {"charge": charge, "ship": ship}
    finally:
        billing.release.set()
        guard.close()


def in_doubt_charge(
    guard: Guard, billing: Billing, tools: dict[str, GuardedTool], event: str, amounts: tuple[int, ...] = (42,)
) -> tuple[str, list[str]]:
    """A run whose charges landed in billing but answered too late while the look-up was down: each is in
    doubt and the run waits for review. Returns the run id and the charges' call ids."""
    billing.lookup_up = False
    with pytest.raises(CallInDoubt), guard.run("pay", source_event_id=event) as run:
        for amount in amounts:
            try:
                tools["charge"](amount=amount)
            except CallInDoubt:
                if amount == amounts[-1]:
                    raise
    billing.release.set()  # the hung requests return (too late for the ledger)
    billing.hang = False
    billing.lookup_up = True
    calls = [c.call_id for c in guard.ledger.calls_of(run.run_id) if c.tool == "billing.charge"]
    return run.run_id, calls


def test_a_retry_of_an_in_doubt_charge_that_landed_records_it_found_and_charges_nobody_twice(
    pay: tuple[Guard, Billing, dict[str, GuardedTool]],
) -> None:
    guard, billing, tools = pay
    run_id, [call_id] = in_doubt_charge(guard, billing, tools, "order-1")
    before = guard.ledger.get_call(call_id)
    assert before is not None and before.state == "in_doubt" and len(billing.charges) == 1

    report = retry_call(guard, run_id, call_id, operator="oncall", note="customer says the charge hung")

    assert (len(billing.charges), billing.invocations) == (1, 1)  # one effect, the endpoint never called again
    assert (report.reconciled, report.retried, report.ran_once) == (1, 0, 0)
    after = guard.ledger.get_call(call_id)
    assert after is not None and after.state == "completed"
    assert after.external_id_map == {"charge": "ch_1"}
    [done] = [e for e in guard.ledger.events_of(run_id) if e.call_id == call_id and e.to_state == "completed"]
    assert (done.from_state, done.actor, done.detail) == (
        "in_doubt",
        "oncall",
        '{"reconciled": "found", "external_ids": {"charge": "ch_1"}}',
    )
    assert [(m.action, m.note) for m in guard.ledger.manual_actions_of(run_id)] == [
        ("retry-call", "customer says the charge hung")
    ]
    assert guard.ledger.verify_chain().ok


def test_a_retry_of_an_in_doubt_charge_confirmed_absent_runs_it_once_with_the_same_key(
    pay: tuple[Guard, Billing, dict[str, GuardedTool]],
) -> None:
    guard, billing, tools = pay
    run_id, [call_id] = in_doubt_charge(guard, billing, tools, "order-2")
    billing.charges.clear()  # the processor dropped it after all: the look-up says it is not there
    report = retry_call(guard, run_id, call_id, operator="oncall", note="processor dropped it")
    assert (report.reconciled, report.ran_once) == (1, 1)
    assert billing.invocations == 2 and len(billing.charges) == 1
    assert billing.keys[0] == billing.keys[1] is not None  # the same idempotency key both times
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state == "completed"


def test_a_retry_nobody_can_check_is_refused_saying_why_and_changes_nothing_until_the_operator_vouches(
    pay: tuple[Guard, Billing, dict[str, GuardedTool]],
) -> None:
    guard, billing, tools = pay
    run_id, [call_id] = in_doubt_charge(guard, billing, tools, "order-3")
    billing.lookup_up = False
    with pytest.raises(CallInDoubt) as refused:
        retry_call(guard, run_id, call_id, operator="oncall", note="try again")
    message = str(refused.value)
    assert "its reconcile check could not tell" in message and "--confirmed-absent" in message
    assert "guard runs finish " + run_id in message
    assert billing.invocations == 1 and guard.ledger.manual_actions_of(run_id) == []
    call, run = guard.ledger.get_call(call_id), guard.ledger.get_run(run_id)
    assert call is not None and call.state == "in_doubt"
    assert run is not None and run.state == "pending_review"

    billing.charges.clear()  # the operator looked in the processor's dashboard: nothing there
    retry_call(guard, run_id, call_id, operator="oncall", note="dashboard shows no charge", confirmed_absent=True)
    assert billing.invocations == 2 and len(billing.charges) == 1
    assert [m.action for m in guard.ledger.manual_actions_of(run_id)] == ["retry-call --confirmed-absent"]


def test_a_retry_whose_check_disagrees_with_the_ledger_is_refused_even_when_vouched_for(
    pay: tuple[Guard, Billing, dict[str, GuardedTool]],
) -> None:
    guard, billing, tools = pay
    billing.reported = "ch_other"  # the tool reported one charge id; the look-up will find another
    run_id, [call_id] = in_doubt_charge(guard, billing, tools, "order-4")
    with pytest.raises(CallInDoubt, match="disagree"):
        retry_call(guard, run_id, call_id, operator="oncall", note="just run it", confirmed_absent=True)
    assert billing.invocations == 1


def test_a_settled_in_doubt_call_moves_its_run_on_and_a_replay_finishes_the_run(
    pay: tuple[Guard, Billing, dict[str, GuardedTool]],
) -> None:
    guard, billing, tools = pay
    run_id, [_call_id] = in_doubt_charge(guard, billing, tools, "order-5")
    stuck = guard.ledger.get_run(run_id)
    assert stuck is not None and stuck.state == "pending_review" and stuck.requires_review

    report = guard.recover()  # the look-up is back: recovery finds the charge

    assert report.reconciled == 1 and billing.invocations == 1
    run = guard.ledger.get_run(run_id)
    assert run is not None and (run.state, run.status_label, run.requires_review) == ("running", None, False)
    assert run.next_safe_action is not None and "deliver the run's event again" in run.next_safe_action
    assert "check billing.charge" not in run.next_safe_action
    with guard.run("pay", source_event_id="order-5"):  # the event again: the charge returns its recorded result
        assert tools["charge"](amount=42) == {"charge_id": "ch_1"}
        tools["ship"](order="o-5")
    done = guard.ledger.get_run(run_id)
    assert done is not None and done.state == "completed" and billing.invocations == 1


def test_a_run_with_a_call_still_in_doubt_stays_in_review_naming_what_is_left_and_the_command(
    ledger: Ledger,
    pay: tuple[Guard, Billing, dict[str, GuardedTool]],
) -> None:
    guard, billing, _ = pay
    # Two charges in flight when the worker died (their leases already ran out).
    unknown = left_started(ledger, "r-two", "billing.charge", "compensable", {"amount": 10}, team="pay")
    landed = left_started(ledger, "r-two", "billing.charge", "compensable", {"amount": 20}, team="pay")
    billing.unknown.add(f"k:{unknown}")  # the look-up cannot answer for the first
    billing.charges[f"k:{landed}"] = "ch_20"  # the second one landed

    report = guard.recover()

    assert (report.reconciled, report.to_review) == (1, 1) and billing.invocations == 0
    states = {c.call_id: c.state for c in guard.ledger.calls_of("r-two")}
    assert (states[unknown], states[landed]) == ("in_doubt", "completed")
    run = guard.ledger.get_run("r-two")
    assert run is not None and run.state == "pending_review" and run.requires_review
    assert run.next_safe_action is not None
    assert f"#1 billing.charge in_doubt ({unknown})" in run.next_safe_action
    assert "guard runs retry-call r-two CALL" in run.next_safe_action
    assert landed not in run.next_safe_action


def test_a_failure_the_policy_lets_the_run_go_past_is_not_left_for_review(
    pay: tuple[Guard, Billing, dict[str, GuardedTool]], tmp_path: Path
) -> None:
    guard, billing, tools = pay
    (tmp_path / "pay-policies" / "pay.yaml").write_text(
        POLICY.replace(
            "{name: ship, tools: [warehouse.ship], class: compensable, on_failure: halt}",
            "{name: ship, tools: [warehouse.ship], class: compensable, on_failure: continue}",
        )
    )
    guard.policies = PolicySet.load_dir(tmp_path / "pay-policies")
    billing.lookup_up = False

    @guard.tool(name="warehouse.ship")
    def ship(order: str) -> None:
        raise RuntimeError("carrier down")

    with pytest.raises(CallInDoubt), guard.run("pay", source_event_id="order-8"):
        with pytest.raises(CallFailed):
            ship(order="o-8")  # the policy says go on without it
        tools["charge"](amount=8)
    billing.release.set()
    billing.lookup_up = True
    guard.recover()
    run = guard.ledger.get_run("pay:order-8")
    assert run is not None and run.state == "running"


def test_an_operator_retry_that_completes_the_last_call_left_makes_the_run_resumable(
    pay: tuple[Guard, Billing, dict[str, GuardedTool]],
) -> None:
    guard, billing, tools = pay
    run_id, [call_id] = in_doubt_charge(guard, billing, tools, "order-7")
    retry_call(guard, run_id, call_id, operator="oncall", note="look-up is back")
    run = guard.ledger.get_run(run_id)
    assert run is not None and (run.state, run.requires_review) == ("running", False)
    settled = [e for e in guard.ledger.events_of(run_id) if e.entity == "run" and e.to_state == "running"]
    detail: Any = settled[-1].detail
    assert "was found by its reconcile check" in detail


@pytest.mark.parametrize("holder", ["elsewhere", "dead_here"])
def test_a_worker_meeting_a_call_another_worker_holds_is_told_when_it_frees_and_how_to_take_it_over(
    ledger: Ledger, pay: tuple[Guard, Billing, dict[str, GuardedTool]], holder: str
) -> None:
    guard, billing, _ = pay
    worker = "otherhost:4242:w" if holder == "elsewhere" else f"{socket.gethostname()}:{dead_pid()}:w"
    left_started(  # a worker that died mid-charge, its lease still live
        ledger,
        "pay:order-9",
        "billing.charge",
        "compensable",
        {"amount": 9},
        ttl=60.0,
        team="pay",
        worker=worker,
        key="charge:order-9",
    )
    keyed = guard.tool(billing.charge, name="billing.charge", key=lambda _args: "charge:order-9")

    with pytest.raises(CallInDoubt) as held, guard.run("pay", source_event_id="order-9"):
        keyed(amount=9)

    message = str(held.value)
    assert held.value.held_by == worker and held.value.in_flight
    assert f"Worker {worker} holds its lease for" in message and "s more" in message
    assert f"guard recover --app MODULE:GUARD --dead-worker {worker}" in message
    assert ("which is not running any more: it is dead" in message) is (holder == "dead_here")
    assert billing.invocations == 0
    report = guard.recover(dead_workers=[worker])  # the operator names it dead: taken over now, reconciled first
    assert report.claimed == 1 and report.held == [] and billing.invocations == 0
