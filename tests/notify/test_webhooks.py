"""Webhook notifications against a real HTTP server on loopback, from a real ledger (a SQLite file, a PostgreSQL
database: every test runs on both).

The team `ops` (written here) has a webhook; its refunds wait for `finance`, its shipments halt the run when
they fail. A real Guard makes the calls; `Notifier.deliver` is one pass, as `guard serve` runs every second.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from loopback import Receiver, receiving

from guard import ApprovalPending, CallDenied, CallFailed, Guard
from guard.ledger import Ledger
from guard.notify import Notifier, verify_signature
from guard.policy import PolicySet
from guard.runtime.review import review
from guard.server import create_app
from guard.testing import poll

KEY = "whsec-test-key-0123456789"
POLICY = """\
team: ops
reviewers:
  rita: [finance]
  carl: [cfo]
  sam: [support]
owners: {owner: rita, backup: support}
notify:
  webhook_env: OPS_WEBHOOK_URL
  secret_env: OPS_WEBHOOK_KEY
stop:
  max_calls: {crm.lookup: 1}
rules:
  - name: lookups
    tools: [crm.lookup]
    class: read
  - name: refunds
    tools: [billing.refund]
    class: compensable
    approval: {roles: [finance], expires_after: 1h}
  - name: big-refunds
    tools: [billing.refund]
    when: {amount_cents: {gt: 50000}}
    class: irreversible
    approval: {roles: [cfo], expires_after: 1h}
  - name: shipping
    tools: [warehouse.ship]
    class: irreversible
    approval: {roles: [support], expires_after: 1h}
    on_failure: halt
"""


def _echo(**kw: Any) -> dict[str, Any]:
    return kw


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving("/services/T000/B000/secret-path") as got:
        yield got


@dataclass
class Ops:
    guard: Guard
    ledger: Ledger
    notifier: Notifier
    shipped: list[dict[str, Any]]


@pytest.fixture
def ops(
    ledger: Ledger, tmp_path: Path, ledger_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Ops]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ops.yaml").write_text(POLICY)
    monkeypatch.setenv("OPS_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("OPS_WEBHOOK_KEY", KEY)
    guard = Guard(policies=policies, db=ledger_url, actor="ops-agent", approval="defer", log_level="error")
    shipped: list[dict[str, Any]] = []

    def refund(**kw: Any) -> dict[str, str]:
        return {"refund_id": "re_1"}

    guard.tool(refund, name="billing.refund")

    def ship(**kw: Any) -> dict[str, str]:
        shipped.append(kw)
        raise ConnectionError("warehouse API answered 503")

    guard.tool(ship, name="warehouse.ship")
    guard.tool(_echo, name="crm.lookup")
    notifier = Notifier(ledger, PolicySet.load_dir(policies), "https://guard.example.com", backoff=0.01, timeout=2)
    try:
        yield Ops(guard, ledger, notifier, shipped)
    finally:
        guard.close()


def _wait_for_refund(ops: Ops) -> str:
    with pytest.raises(ApprovalPending) as pending, ops.guard.run("ops"):
        ops.guard.tool_named("billing.refund")(invoice_id="inv_9", amount_cents=12000)  # type: ignore[misc]
    return str(pending.value.approval_id)


def test_a_waiting_call_is_told_once_signed_slack_json_with_a_link_and_the_owning_role(
    ops: Ops, receiver: Receiver
) -> None:
    approval_id = _wait_for_refund(ops)
    report = ops.notifier.deliver()
    assert (report.sent, report.failed) == (1, 0)
    [(headers, body)] = receiver.got
    assert verify_signature(KEY.encode(), headers, body, now=time.time())
    assert not verify_signature(b"another key", headers, body, now=time.time())
    assert not verify_signature(KEY.encode(), headers, body + b" ", now=time.time())
    assert not verify_signature(KEY.encode(), headers, body, now=time.time() + 3600)  # a replay an hour later
    message = json.loads(body)
    assert f"<https://guard.example.com/approvals/{approval_id}|Review it>" in message["text"]
    assert "billing.refund" in message["text"] and "*finance*" in message["text"]
    assert message["guard"]["approval_id"] == approval_id and message["guard"]["roles"] == ["finance"]

    assert ops.notifier.deliver().sent == 0  # a second pass tells nothing twice
    assert len(receiver.got) == 1
    [notice] = ops.ledger.notices(team="ops")
    assert (notice.state, notice.kind, notice.attempts, notice.approval_id) == (
        "sent",
        "approval_waiting",
        1,
        approval_id,
    )
    assert notice.target == receiver.url.split("/services")[0]  # never the webhook's secret path


def test_an_edit_that_puts_new_arguments_on_the_table_tells_the_channel_again_naming_the_roles_it_needs_now(
    ops: Ops, receiver: Receiver
) -> None:
    approval_id = _wait_for_refund(ops)
    assert ops.notifier.deliver().sent == 1
    policies = PolicySet.load_dir(ops.guard.policies.directory or "")
    edited = {"invoice_id": "inv_9", "amount_cents": 90000}  # over 500.00: the policy asks a cfo for this one
    result = review(ops.ledger, policies, approval_id, reviewer="rita", decision="approve", edited_args=edited)
    assert not result.settled  # rita is finance: her vote on the edit does not count

    assert (ops.notifier.deliver().sent, len(receiver.got)) == (1, 2)
    message = receiver.bodies()[-1]
    assert "Approval needed again" in message["text"] and "edited by rita" in message["text"]
    assert "*cfo*" in message["text"]
    facts = message["guard"]
    assert (facts["approval_id"], facts["roles"], facts["edited_by"], facts["rule"]) == (
        approval_id,
        ["cfo"],
        "rita",
        "big-refunds",
    )
    assert facts["args_hash"] == ops.ledger.get_approval(approval_id).approved_args_hash  # type: ignore[union-attr]

    review(ops.ledger, policies, approval_id, reviewer="carl", decision="approve")
    assert ops.notifier.deliver().sent == 0  # decided: nothing more to tell


def test_an_edit_the_editor_settles_at_once_is_not_told(ops: Ops, receiver: Receiver) -> None:
    approval_id = _wait_for_refund(ops)
    policies = PolicySet.load_dir(ops.guard.policies.directory or "")
    review(
        ops.ledger,
        policies,
        approval_id,
        reviewer="rita",
        decision="approve",
        edited_args={"invoice_id": "inv_9", "amount_cents": 11000},
    )
    report = ops.notifier.deliver()
    assert (report.sent, report.skipped) == (0, 2)  # the first request and the edit: both decided before the pass
    assert receiver.got == []


def test_a_failing_webhook_is_retried_and_a_dead_one_blocks_nothing_and_shows_in_the_ledger(
    ops: Ops, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.statuses = [500, 502]
    _wait_for_refund(ops)
    assert ops.notifier.deliver().sent == 1
    [notice] = ops.ledger.notices()
    assert (notice.state, notice.attempts) == ("sent", 3) and len(receiver.got) == 3

    monkeypatch.setenv("OPS_WEBHOOK_URL", "http://127.0.0.1:9/dead")  # nothing listens on the discard port
    approval_id = _wait_for_refund(ops)
    report = ops.notifier.deliver()
    assert (report.sent, report.failed) == (0, 1)
    dead = ops.ledger.notices(state="failed")[0]
    assert dead.attempts == 3 and dead.last_error is not None and "unreachable" in dead.last_error
    assert "/dead" not in dead.last_error and dead.target == "http://127.0.0.1:9"
    # The call still waits as before and is decided as before: the dead webhook changed nothing.
    approval = ops.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "pending"
    decided = ops.ledger.decide(approval_id, reviewer="rita", decision="approve", reviewer_roles=frozenset({"finance"}))
    assert decided.approval.state == "approved"


def test_a_run_that_halts_is_told_and_a_call_decided_before_the_pass_is_skipped(ops: Ops, receiver: Receiver) -> None:
    approval_id = _wait_for_refund(ops)
    ops.ledger.decide(
        approval_id,
        reviewer="rita",
        decision="reject",
        reviewer_roles=frozenset({"finance"}),
        reason="duplicate refund",
    )
    with pytest.raises(ApprovalPending) as pending, ops.guard.run("ops") as run:
        ops.guard.tool_named("warehouse.ship")(order_id="o_1")  # type: ignore[misc]
    ops.ledger.decide(
        str(pending.value.approval_id), reviewer="sam", decision="approve", reviewer_roles=frozenset({"support"})
    )
    with pytest.raises(CallFailed), ops.guard.run("ops", run_id=run.run_id):
        ops.guard.tool_named("warehouse.ship")(order_id="o_1")  # type: ignore[misc]
    assert len(ops.shipped) == 1

    report = ops.notifier.deliver()
    # The refund was decided before the pass: skipped. The shipment's wait was approved before the pass:
    # skipped. The halted run is still halted: told.
    assert (report.sent, report.skipped) == (1, 2)
    [message] = receiver.bodies()
    assert message["guard"]["event"] == "run_halted" and message["guard"]["run_id"] == run.run_id
    assert "*cfo, finance, support*" in message["text"] and "warehouse API answered 503" in message["text"]
    states = sorted((n.kind, n.state) for n in ops.ledger.notices())
    assert states == [("approval_waiting", "skipped"), ("approval_waiting", "skipped"), ("run_halted", "sent")]


def test_a_pause_and_its_lift_are_told_with_who_why_and_the_owners_named(ops: Ops, receiver: Receiver) -> None:
    ops.ledger.pause("team", "ops", reason="refunds doubled", by="olga")
    ops.ledger.pause("tool", "crm.*", reason="every team's CRM", by="olga")  # no team's pause: nobody's channel
    ops.ledger.unpause("team", "ops", by="rita", reason="duplicates voided")
    report = ops.notifier.deliver()
    assert (report.sent, report.failed) == (2, 0)
    paused, lifted = receiver.bodies()
    assert paused["text"].startswith("Paused in team *ops*: team `ops` by olga: refunds doubled.")
    assert "Owners: *rita* (backup *support*)" in paused["text"]
    assert paused["guard"] | {"event_id": 0} == paused["guard"] | {
        "event_id": 0,
        "event": "paused",
        "state": "paused",
        "scope": "team",
        "target": "ops",
        "by": "olga",
        "reason": "refunds doubled",
        "owners": [{"owner": "rita", "backup": "support"}],
    }
    assert lifted["text"].startswith("Pause lifted in team *ops*: team `ops` runs again (rita: duplicates voided)")
    assert sorted((n.kind, n.state, n.run_id) for n in ops.ledger.notices()) == [("paused", "sent", None)] * 2


def test_a_tripped_stop_rule_is_told_once_naming_the_tool_the_run_and_the_owners(ops: Ops, receiver: Receiver) -> None:
    with ops.guard.run("ops") as run:
        lookup = ops.guard.tool_named("crm.lookup")
        lookup(email="a@example.com")  # type: ignore[misc]
        with pytest.raises(CallDenied, match="stop rule"):
            lookup(email="b@example.com")  # type: ignore[misc]
    assert ops.notifier.deliver().sent == 1
    [message] = receiver.bodies()
    assert message["guard"]["event"] == "stop_tripped" and message["guard"]["run_id"] == run.run_id
    assert message["guard"]["tool"] == "crm.lookup" and "stop.max_calls" in message["guard"]["reason"]
    assert "Owners: *rita* (backup *support*)" in message["text"]
    assert ops.notifier.deliver().sent == 0


def test_each_step_of_a_staged_restart_is_told_opened_passed_and_failed_and_re_paused(
    ops: Ops, receiver: Receiver
) -> None:
    lookup = ops.guard.tool_named("crm.lookup")
    ops.ledger.pause("team", "ops", reason="refunds doubled", by="rita")
    restart = ops.ledger.start_restart("team", "ops", stages=[1, 2], by="rita", reason="fix deployed")
    with ops.guard.run("ops"):
        lookup(email="a@example.com")  # type: ignore[misc]  # stage 1's one call: the stage passes and holds
    ops.ledger.confirm_restart("team", "ops", by="rita", reason="the first lookup looked right")
    with ops.guard.run("ops"):
        lookup(email="b@example.com")  # type: ignore[misc]
        with pytest.raises(CallDenied, match="stop rule"):  # a stop rule trips inside stage 2: it fails
            lookup(email="c@example.com")  # type: ignore[misc]
    assert ops.notifier.deliver().failed == 0
    steps = [body for body in receiver.bodies() if body["guard"]["event"] == "restart"]
    assert [(s["guard"]["step"], s["guard"]["stage"]) for s in steps] == [
        ("opened", 1),
        ("passed", 1),
        ("opened", 2),
        ("failed", 2),
    ]
    assert {s["guard"]["restart"] for s in steps} == {restart}
    opened, passed, _, failed = (s["text"] for s in steps)
    assert opened.startswith(
        f"Staged restart {restart} of team `ops` in team *ops*: stage 1 of 1,2 opened: it lets 1 call(s) through "
        "(rita: fix deployed)"
    )
    assert "stage 1 of 1,2 passed (1 call(s)): the pause holds until an owner confirms" in passed
    assert "stage 2 of 1,2 failed: " in failed and "Re-paused: the pause holds everything again" in failed
    assert all("Owners: *rita* (backup *support*)" in s["text"] for s in steps)
    assert [r["state"] for r in ops.ledger.restarts()] == ["failed"]
    assert ops.ledger.active_pauses()[0]["target"] == "ops"  # the pause holds again
    assert ops.notifier.deliver().sent == 0  # each step told once


def test_an_unset_signing_key_sends_nothing_unsigned(
    ops: Ops, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPS_WEBHOOK_KEY")
    _wait_for_refund(ops)
    assert ops.notifier.deliver().failed == 1
    assert receiver.got == []
    [notice] = ops.ledger.notices()
    assert notice.state == "failed" and notice.last_error is not None and "OPS_WEBHOOK_KEY" in notice.last_error


def test_two_notifiers_at_once_tell_each_event_once(ops: Ops, receiver: Receiver) -> None:
    for _ in range(5):
        _wait_for_refund(ops)
    other = Notifier(Ledger(ops.ledger.url), ops.notifier.policies, "https://guard.example.com")
    try:
        barrier = threading.Barrier(2)
        reports: list[int] = []

        def one(n: Notifier) -> None:
            barrier.wait()
            reports.append(n.deliver().sent)

        threads = [threading.Thread(target=one, args=(n,)) for n in (ops.notifier, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.ledger.close()
    assert sum(reports) == 5 and len(receiver.got) == 5
    assert len({json.loads(body)["guard"]["event_id"] for _, body in receiver.got}) == 5


def test_the_approval_service_tells_the_channel_while_it_runs(ops: Ops, receiver: Receiver, tmp_path: Path) -> None:
    app = create_app(
        ops.ledger.url,
        tmp_path / "policies",
        session_secret=b"s" * 32,
        public_url="https://review.example.com",
        notify_every=0.05,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        approval_id = _wait_for_refund(ops)
        poll(lambda: receiver.got, timeout=10, what="the service's notifier posting to the webhook")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
    [message] = receiver.bodies()
    assert message["guard"]["url"] == f"https://review.example.com/approvals/{approval_id}"
    assert [n.state for n in ops.ledger.notices()] == ["sent"]


def test_a_notification_a_dead_notifier_left_sending_is_taken_over_and_sent_once(ops: Ops, receiver: Receiver) -> None:
    approval_id = _wait_for_refund(ops)
    # A notifier claimed the event, then died before sending: its row stays `sending`, its cursor moved on.
    [event], last = ops.ledger.notice_events(ops.ledger.notice_cursor())
    assert ops.ledger.claim_notice(event, target="http://127.0.0.1", approval_id=approval_id) is not None
    ops.ledger.move_notice_cursor(last)
    assert ops.notifier.deliver().sent == 0  # still fresh: it may be in the middle of its send
    assert receiver.got == []
    with ops.ledger.conns.connection() as conn:
        conn.execute("UPDATE notifications SET updated_at = updated_at - 3600")  # an hour later

    assert ops.notifier.deliver().sent == 1
    assert ops.notifier.deliver().sent == 0
    [message] = receiver.bodies()
    assert message["guard"]["approval_id"] == approval_id
    [notice] = ops.ledger.notices()
    assert (notice.state, notice.attempts) == ("sent", 1)


def test_a_webhook_url_that_is_not_http_is_refused_plainly_and_nothing_is_opened(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    monkeypatch.setenv("OPS_WEBHOOK_URL", secret.as_uri())  # file:///...: urllib would open it
    _wait_for_refund(ops)
    report = ops.notifier.deliver()
    assert (report.sent, report.failed) == (0, 1)
    [notice] = ops.ledger.notices(state="failed")
    assert notice.attempts == 0 and notice.last_error is not None
    assert "must be http:// or https://" in notice.last_error and "do not read me" not in notice.last_error
