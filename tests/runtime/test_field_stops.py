"""The seeds' stop rules on named arguments (policy `stop.records`, `stop.duplicates`, `stop.blank_fields`): far more
records than expected, duplicate messages across runs, blank fields written. Each is judged and counted in the
ledger in the offer's transaction, on every backend; a trip denies the call and, with `on_trip: pause`, pauses the
team or the tool. The cross-run rules are also raced by real worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_support import Driver, Recorder

from guard import CallDenied, Guard, TeamPaused, ToolPaused
from guard.ledger import CallState, Ledger, RunClose, RunState

BRAKES_POLICY = """\
team: brakes
reviewers: {olga: [ops], otto: [operator]}
owners: {owner: olga, backup: otto}
stop:
  records:
    - {name: customers-per-run, tools: ["billing.*"], field: customer_id, max: 3}
    - {name: contacts-per-hour, tools: [crm.update_contact], field: contact_id, max: 4, per: 1h, on_trip: pause}
  duplicates:
    - {name: reminder-once, tools: [email.send_reminder], fields: [to, invoice_id], within: 10m, on_trip: pause,
       pause: tool}
    - {name: receipt-twice, tools: [email.send_receipt], fields: [to], within: 1h, max: 2}
  blank_fields:
    - {name: no-blank-contacts, tools: [crm.update_contact], fields: [email, status]}
    - {name: blank-notes-watched, tools: [crm.add_note], fields: [text], mode: shadow}
rules:
  - {name: billing, tools: ["billing.*"], class: compensable}
  - {name: crm, tools: ["crm.*"], class: idempotent}
  - {name: email, tools: ["email.*"], class: compensable}
"""

WORKER = Path(__file__).with_name("field_stop_worker.py")


@pytest.fixture
def brakes_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "brakes-policies"
    folder.mkdir()
    (folder / "brakes.yaml").write_text(BRAKES_POLICY)
    return folder


@pytest.fixture
def brakes_guard(brakes_dir: Path, make_guard: Callable[..., Guard]) -> Guard:
    return make_guard(policies=brakes_dir, log_level="error")


def test_a_run_that_touches_more_distinct_records_than_expected_is_stopped_and_known_records_still_pass(
    brakes_guard: Guard, driver: Driver
) -> None:
    body = Recorder(result={"invoice_id": "inv"})
    invoice = driver.tool(brakes_guard, body, name="billing.create_invoice")
    with driver.run(brakes_guard, "brakes") as run:
        for customer in ("c1", "c2", "c3"):
            run.call(invoice, customer_id=customer, amount_cents=100)
        with pytest.raises(
            CallDenied,
            match=r"stop rule customers-per-run: run .* already touched 3 distinct "
            r"customer_id value\(s\)",
        ):
            run.call(invoice, customer_id="c4", amount_cents=100)
        run.call(invoice, customer_id="c2", amount_cents=200)  # a record already touched is not another one
        stopped = run.run_id
    with driver.run(brakes_guard, "brakes") as other:  # per run: another run counts from zero
        other.call(invoice, customer_id="c4", amount_cents=100)
    assert [c["customer_id"] for c in body.calls] == ["c1", "c2", "c3", "c2", "c4"]
    assert [c.state for c in brakes_guard.ledger.calls_of(stopped)].count(CallState.DENIED) == 1


def test_too_many_records_in_a_window_across_runs_denies_the_call_and_pauses_the_team_naming_the_rule(
    ledger: Ledger, brakes_guard: Guard, driver: Driver
) -> None:
    body = Recorder(result={"ok": True})
    update = driver.tool(brakes_guard, body, name="crm.update_contact")
    with driver.run(brakes_guard, "brakes") as first:
        first.call(update, contact_id="k1", email="a@x.io", status="lead")
        first.call(update, contact_id="k2", email="b@x.io", status="lead")
    with driver.run(brakes_guard, "brakes") as second:
        second.call(update, contact_id="k3", email="c@x.io", status="lead")
        second.call(update, contact_id="k1", email="a@x.io", status="won")  # k1 again: not a new record
        second.call(update, contact_id="k4", email="d@x.io", status="lead")
        with pytest.raises(
            CallDenied,
            match=r"contacts-per-hour: team brakes's 3600s window already touched 4 "
            r"distinct contact_id .* team brakes is now paused",
        ):
            second.call(update, contact_id="k5", email="e@x.io", status="lead")
    assert len(body.calls) == 5
    [pause] = ledger.active_pauses()
    assert (pause["scope"], pause["target"], pause["paused_by"]) == ("team", "brakes", "stop rule contacts-per-hour")
    with pytest.raises(TeamPaused) as refused, brakes_guard.run("brakes"):  # no new run feeds the job
        pass
    assert refused.value.owners == ["olga", "otto"]
    events = ledger.pause_events("brakes")
    assert [e.to_state for e in events] == ["paused"] and "contacts-per-hour" in events[0].detail


def test_the_same_reminder_to_the_same_recipient_in_another_run_is_a_duplicate_and_pauses_the_tool(
    ledger: Ledger, brakes_guard: Guard, driver: Driver
) -> None:
    body = Recorder(result={"message_id": "m"})
    remind = driver.tool(brakes_guard, body, name="email.send_reminder")
    with driver.run(brakes_guard, "brakes", run_id="evt-1") as first:
        first.call(remind, to="ada@x.io", invoice_id="inv_1")
        first.call(remind, to="bob@x.io", invoice_id="inv_1")  # another recipient: not a duplicate
        first.call(remind, to="ada@x.io", invoice_id="inv_2")  # another invoice: not a duplicate
    with driver.run(brakes_guard, "brakes", run_id="evt-1") as again:  # the same event delivered again
        again.call(remind, to="ada@x.io", invoice_id="inv_1")  # returns the recorded result: nothing is sent
    duplicate = (
        r"reminder-once: email.send_reminder was already called 1 time\(s\) with the same to, invoice_id in "
        r"the last 600s .* tool email.send_reminder is now paused"
    )
    with driver.run(brakes_guard, "brakes", run_id="evt-2") as second, pytest.raises(CallDenied, match=duplicate):
        second.call(remind, to="ada@x.io", invoice_id="inv_1")
    assert len(body.calls) == 3
    [pause] = ledger.active_pauses()
    assert (pause["scope"], pause["target"], pause["team"]) == ("tool", "email.send_reminder", "brakes")
    with pytest.raises(ToolPaused), brakes_guard.run("brakes", uses=["email.send_reminder"]):
        pass


def test_a_duplicate_rule_allows_its_count_then_denies_and_the_window_moving_on_lets_the_message_go(
    ledger: Ledger, brakes_guard: Guard, driver: Driver
) -> None:
    body = Recorder(result={"message_id": "m"})
    receipt = driver.tool(brakes_guard, body, name="email.send_receipt")
    for n in range(2):
        with driver.run(brakes_guard, "brakes") as run:
            run.call(receipt, to="ada@x.io", n=n)
    with driver.run(brakes_guard, "brakes") as run:
        for _ in range(2):  # denied calls do not count: an agent that keeps trying stays stopped
            with pytest.raises(CallDenied, match="receipt-twice"):
                run.call(receipt, to="ada@x.io", n=9)
    with ledger.conns.write() as cur:  # an hour passes
        cur.execute("UPDATE stop_marks SET at = at - 3601 WHERE rule = 'receipt-twice'")
    with driver.run(brakes_guard, "brakes") as run:
        run.call(receipt, to="ada@x.io", n=10)
    assert len(body.calls) == 3 and ledger.active_pauses() == []


def test_a_write_with_a_named_field_empty_null_or_whitespace_is_denied_and_one_leaving_it_out_is_not(
    brakes_guard: Guard, driver: Driver
) -> None:
    body = Recorder(result={"ok": True})
    update = driver.tool(brakes_guard, body, name="crm.update_contact")
    with driver.run(brakes_guard, "brakes") as run:
        blanks: list[dict[str, Any]] = [{"email": "   "}, {"status": None}, {"email": ""}, {"status": []}]
        for blank in blanks:
            with pytest.raises(
                CallDenied,
                match=r"no-blank-contacts: crm.update_contact would write "
                r"(email|status) blank",
            ):
                run.call(update, contact_id="k1", **{"email": "a@x.io", "status": "lead", **blank})
        run.call(update, contact_id="k1", email="a@x.io")  # status left out: not written, not blank
        run.call(update, contact_id="k1", email="a@x.io", status="won")
    assert len(body.calls) == 2


def test_a_shadow_rule_refuses_nothing_and_records_what_it_would_have_decided(
    brakes_guard: Guard, driver: Driver
) -> None:
    body = Recorder(result={"ok": True})
    note = driver.tool(brakes_guard, body, name="crm.add_note")
    with driver.run(brakes_guard, "brakes") as run:
        run.call(note, contact_id="k1", text=" ")
        run.call(note, contact_id="k1", text="called back")
        run_id = run.run_id
    assert len(body.calls) == 2
    shadow = [e for e in brakes_guard.ledger.events_of(run_id) if e.entity == "stop"]
    assert [e.to_state for e in shadow] == ["would_trip"]
    assert json.loads(shadow[0].detail)["rule"] == "blank-notes-watched"


def _race(brakes_dir: Path, url: str, tool: str, calls_per_worker: list[list[dict[str, Any]]]) -> list[list[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(brakes_dir), url, f"w{i}", tool, *(json.dumps(a) for a in calls)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i, calls in enumerate(calls_per_worker)
    ]
    for proc in procs:  # every worker has its run open ...
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", proc.communicate(timeout=60)[1].decode()[-2000:]
    for proc in procs:  # ... then the gate releases them all at once
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    out: list[list[str]] = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        out.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    return out


def test_worker_processes_sending_the_same_receipt_at_once_send_it_exactly_as_often_as_the_rule_allows(
    brakes_dir: Path, ledger_url: str
) -> None:
    ended = _race(brakes_dir, ledger_url, "email.send_receipt", [[{"to": "ada@x.io", "w": i}] for i in range(6)])
    flat = [e for worker in ended for e in worker]
    assert flat.count("ran") == 2 and flat.count("denied") == 4


def test_worker_processes_touching_many_records_at_once_touch_exactly_the_windows_limit_then_pause_the_team(
    brakes_dir: Path, ledger_url: str
) -> None:
    ended = _race(
        brakes_dir,
        ledger_url,
        "crm.update_contact",
        [[{"contact_id": f"k{i}-{j}", "email": "a@x.io", "status": "lead"} for j in range(2)] for i in range(5)],
    )
    flat = [e for worker in ended for e in worker]
    assert flat.count("ran") == 4 and flat.count("denied") == 6


def test_a_shadow_policy_rule_lets_the_call_run_and_records_what_it_would_have_decided_and_counts_it(
    ledger: Ledger, tmp_path: Path, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    folder = tmp_path / "shadowed"
    folder.mkdir()
    (folder / "brakes.yaml").write_text(
        BRAKES_POLICY.replace(
            '  - {name: email, tools: ["email.*"], class: compensable}\n',
            '  - {name: email, tools: ["email.*"], class: compensable}\n'
            '  - {name: email-watch, tools: ["email.*"], class: irreversible, '
            "approval: {roles: [ops]}, mode: shadow}\n",
        )
    )
    guard = make_guard(policies=folder, log_level="error")
    body = Recorder(result={"message_id": "m"})
    send = driver.tool(guard, body, name="email.send_receipt")
    with driver.run(guard, "brakes") as run:
        run.call(send, to="ada@x.io")
        run_id = run.run_id
    assert len(body.calls) == 1  # enforced: allowed, as before
    [offered] = [e for e in guard.ledger.events_of(run_id) if e.entity == "call" and "offered" in e.path]
    assert json.loads(offered.detail)["shadow"].startswith("approve, irreversible, by rule email-watch")
    with ledger.conns.read() as cur:
        cur.execute("SELECT team, rule, kind, verdicts FROM shadow_counts")
        assert cur.fetchall() == [("brakes", "email", "rule", 1)]


def _marks_by_scope(ledger: Ledger) -> dict[str, int]:
    with ledger.conns.read() as cur:
        cur.execute("SELECT scope, COUNT(*) FROM stop_marks GROUP BY scope")
        return {str(scope): int(n) for scope, n in cur.fetchall()}


def test_a_runs_per_run_counts_are_pruned_when_it_ends_and_the_window_and_other_runs_still_count(
    ledger: Ledger, brakes_guard: Guard, driver: Driver
) -> None:
    invoice = driver.tool(brakes_guard, Recorder(result={"invoice_id": "inv"}), name="billing.create_invoice")
    update = driver.tool(brakes_guard, Recorder(result={"ok": True}), name="crm.update_contact")
    with driver.run(brakes_guard, "brakes") as first:
        for customer in ("c1", "c2", "c3"):
            first.call(invoice, customer_id=customer, amount_cents=100)
        first.call(update, contact_id="k1", email="a@x.io", status="lead")
        first.call(update, contact_id="k2", email="b@x.io", status="lead")
        assert _marks_by_scope(ledger)[first.run_id] == 3
    marks = _marks_by_scope(ledger)
    assert first.run_id not in marks  # the run ended: its per-run rows are gone
    assert [n for scope, n in marks.items() if scope.startswith("w")] == [2]  # the team's window is kept
    with driver.run(brakes_guard, "brakes") as second:
        for customer in ("c1", "c2", "c3"):  # per run: counts from zero, and up to the limit again
            second.call(invoice, customer_id=customer, amount_cents=100)
        with pytest.raises(CallDenied, match="customers-per-run"):
            second.call(invoice, customer_id="c4", amount_cents=100)
        second.call(update, contact_id="k3", email="c@x.io", status="lead")
        second.call(update, contact_id="k4", email="d@x.io", status="lead")
        with pytest.raises(CallDenied, match="contacts-per-hour"):  # the window still holds the ended run's two
            second.call(update, contact_id="k5", email="e@x.io", status="lead")
        assert _marks_by_scope(ledger)[second.run_id] == 3


def test_a_run_stopped_for_review_keeps_its_counts_so_a_resumed_run_cannot_touch_more(
    ledger: Ledger, brakes_guard: Guard, driver: Driver
) -> None:
    invoice = driver.tool(brakes_guard, Recorder(result={"invoice_id": "inv"}), name="billing.create_invoice")
    with driver.run(brakes_guard, "brakes") as run:
        for customer in ("c1", "c2"):
            run.call(invoice, customer_id=customer, amount_cents=100)
        ledger.move_run(run.run_id, RunClose(RunState.PENDING_REVIEW, requires_review=True), actor="op")
    assert _marks_by_scope(ledger)[run.run_id] == 2  # not ended: nothing pruned
    ledger.move_run(run.run_id, RunClose(RunState.FINISHED_BY_HAND), actor="test")
    assert run.run_id not in _marks_by_scope(ledger)
