"""Stop rules (policy `stop:`): a runaway agent's next call is denied and recorded before it starts, per run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_support import Driver, Recorder

from guard import ApprovalPending, CallDenied, CallFailed, Guard, RollbackContext
from guard.ledger import Ledger

LOOP_POLICY = """\
team: loop
reviewers: {olga: [ops]}
stop:
  repeats: 2
  max_calls:
    "outreach.send_*": 3
    "payout.*": 1
  rate:
    "billing.*": {calls: 2, per: 1h}
rules:
  - name: search
    tools: [crm.search]
    class: read
  - name: outreach
    tools: ["outreach.send_*"]
    class: compensable
  - name: billing
    tools: ["billing.*"]
    class: compensable
  - name: payout
    tools: ["payout.*"]
    class: irreversible
    approval: {roles: [ops]}
  - name: provisioning
    tools: [provisioning.create_workspace]
    class: compensable
    on_failure: compensate
"""


@pytest.fixture
def loop_guard(tmp_path: Path, db_path: Path) -> Iterator[Callable[..., Guard]]:
    folder = tmp_path / "loop-policies"
    folder.mkdir()
    (folder / "loop.yaml").write_text(LOOP_POLICY)
    made: list[Guard] = []

    def make(**kwargs: Any) -> Guard:
        guard = Guard(policies=folder, db=str(db_path), log_level="error", **kwargs)
        made.append(guard)
        return guard

    yield make
    for guard in made:
        guard.close()


def test_the_same_call_past_its_repeats_is_denied_and_recorded_and_stays_denied(
    loop_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = loop_guard()
    body = Recorder(result={"hits": []})
    search = driver.tool(guard, body, name="crm.search")
    with driver.run(guard, "loop") as run:
        run.call(search, q="ada")
        run.call(search, q="ada")
        for _ in range(2):  # the third, and the fourth: an agent that keeps looping stays stopped
            with pytest.raises(CallDenied, match=r"stop rule: crm.search was called with these same arguments 2"):
                run.call(search, q="ada")
        run.call(search, q="grace")  # another course goes on
        run.call(search, q="ada")  # and the count starts again
        run_id = run.run_id

    assert [c["q"] for c in body.calls] == ["ada", "ada", "grace", "ada"]
    calls = guard.ledger.calls_of(run_id)
    assert [c.state for c in calls] == ["completed", "completed", "denied", "denied", "completed", "completed"]
    assert all("stop.repeats: 2" in (c.reason or "") for c in calls if c.state == "denied")


def test_more_calls_of_a_tool_than_a_run_may_make_are_denied_and_the_next_run_starts_afresh(
    loop_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = loop_guard()
    body = Recorder(result={"sent": True})
    send_email = driver.tool(guard, body, name="outreach.send_email")
    send_sms = driver.tool(guard, body, name="outreach.send_sms")
    with driver.run(guard, "loop") as run:
        run.call(send_email, to="a@example.com")
        run.call(send_sms, to="+100")
        run.call(send_email, to="b@example.com")
        with pytest.raises(CallDenied, match=r"already made 3 call\(s\) of outreach.send_\*") as stopped:
            run.call(send_sms, to="+200")
        first = run.run_id
    assert stopped.value.fields["state"] == "denied"
    assert len(body.calls) == 3

    with driver.run(guard, "loop") as again:  # the limit is per run
        again.call(send_email, to="c@example.com")
    assert len(body.calls) == 4
    assert [c.state for c in guard.ledger.calls_of(first)] == ["completed"] * 3 + ["denied"]


def test_a_policy_without_stop_rules_stops_no_repeat_and_counts_nothing_in_the_ledger(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    decision = guard.policies.classify("onboarding", "crm.find_contact", {"email": "a@example.com"})
    assert decision.stop.repeats is None and decision.stop.max_calls == ()
    body = Recorder(result={"contact_id": "c-1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, "onboarding") as run:
        for _ in range(6):  # the same call again and again: only a stop rule would refuse it
            run.call(find, email="a@example.com")
    assert len(body.calls) == 6
    assert [c.state for c in guard.ledger.calls_of(run.run_id)] == ["completed"] * 6
    with ledger.conns.read() as cur:
        cur.execute("SELECT count(*) FROM rate_windows")
        assert cur.fetchone()[0] == 0  # no window was counted for a team without rate rules


def test_a_rate_rule_counts_the_whole_team_across_runs_and_opens_again_in_the_next_window(
    ledger: Ledger, loop_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = loop_guard()
    body = Recorder(result={"invoice_id": "inv"})
    invoice = driver.tool(guard, body, name="billing.create_invoice")
    refund = driver.tool(guard, body, name="billing.refund")
    with driver.run(guard, "loop") as first:
        first.call(invoice, amount_cents=100)
    with driver.run(guard, "loop") as second:
        second.call(refund, amount_cents=100)  # another tool of the same pattern, in another run
        with pytest.raises(CallDenied, match=r"team loop already made 2 call\(s\) of billing\.\* in this 3600s window"):
            second.call(invoice, amount_cents=200)
        with pytest.raises(CallDenied, match="stop rule"):  # the denied call did not count, and did not reset
            second.call(invoice, amount_cents=300)
        stopped = second.run_id
    assert len(body.calls) == 2

    with ledger.conns.write() as cur:  # an hour passes: the window the count is in is an old one now
        cur.execute("UPDATE rate_windows SET window = window - 1 WHERE team = 'loop'")
    with driver.run(guard, "loop") as third:
        third.call(invoice, amount_cents=400)
    assert len(body.calls) == 3
    assert [c.state for c in guard.ledger.calls_of(stopped)] == ["completed", "denied", "denied"]
    with ledger.conns.read() as cur:
        cur.execute("SELECT pattern, period, calls FROM rate_windows WHERE team = 'loop'")
        assert cur.fetchall() == [("billing.*", 3600.0, 1)]


def test_stop_rules_never_stop_a_compensation(loop_guard: Callable[..., Guard]) -> None:
    guard = loop_guard()
    voided: list[str] = []

    def create_invoice(amount_cents: int) -> dict[str, str]:
        return {"invoice_id": f"inv-{amount_cents}"}

    invoice = guard.tool(create_invoice, name="billing.create_invoice", external_ids={"invoice": "invoice_id"})

    @invoice.compensation(name="billing.void_invoice", kind="void")
    def void(context: RollbackContext) -> dict[str, bool]:
        voided.append(context.external_ids["invoice"])
        return {"voided": True}

    def create_workspace(plan: str) -> None:
        raise RuntimeError("provisioning is down")

    workspace = guard.tool(create_workspace, name="provisioning.create_workspace")
    with pytest.raises(CallFailed), guard.run("loop") as run:
        invoice(amount_cents=100)
        invoice(amount_cents=200)  # the team's rate for billing.* (2 an hour) is used up now
        workspace(plan="pro")  # fails: the saga voids both invoices, each a billing.* call of its own
    assert voided == ["inv-200", "inv-100"]
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and record.state == "rolled_back"


def test_resuming_a_call_that_waited_for_approval_is_not_counted_again(
    ledger: Ledger, loop_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = loop_guard(approval="defer", actor="agent")
    body = Recorder(result={"payout_id": "p-1"})
    payout = driver.tool(guard, body, name="payout.send")
    with driver.run(guard, "loop") as run:
        with pytest.raises(ApprovalPending) as pending:
            run.call(payout, amount_cents=500)
        ledger.decide(pending.value.approval_id, reviewer="olga", decision="approve", reviewer_roles=frozenset({"ops"}))
        assert run.call(payout, amount_cents=500) == {"payout_id": "p-1"}  # the resume: the one payout of the run
        with pytest.raises(CallDenied, match=r"already made 1 call\(s\) of payout\.\*"):
            run.call(payout, amount_cents=900)  # a second one is over `max_calls`
    assert body.calls == [{"amount_cents": 500}]
