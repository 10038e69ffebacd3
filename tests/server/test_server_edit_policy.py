"""An edited approval goes back through the team's policy, and a vote stands only while its reviewer may vote.

Over the real app (FastAPI's TestClient, the ASGI app in-process) on a real ledger file, with a real Guard in
defer mode as the agent. The team `pay` (written here): a refund needs one `finance` approval; over 500.00 it
needs two `cfo` approvals; over 10,000.00 it is denied; refunds to test customers (`customer.tier`) are
denied. `card_token` is a secret. The service reads the policy file on every request (`policies_every=0`), so
an edit of the file takes effect at the next request.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard import ApprovalPending, CallFailed, Guard
from guard.canonical import REDACTED, args_hash, redact
from guard.identity import identity
from guard.ledger import Ledger
from guard.policy import Verdict, policy_from_text
from guard.server import create_app

POLICY = """\
team: pay
secrets: [card_token]
reviewers:
  rita: [finance]
  omar: [finance]
  carla: [cfo]
  dora: [cfo]
  fran: [finance, cfo]
  agent: [finance]
rules:
  - name: refund
    tools: [billing.refund]
    class: compensable
    approval: {roles: [finance], quorum: 1, expires_after: 4h}
  - name: big-refund
    tools: [billing.refund]
    when: {amount_cents: {gt: 50000}}
    class: compensable
    approval: {roles: [cfo], quorum: 2, expires_after: 4h}
  - name: huge-refund
    tools: [billing.refund]
    when: {amount_cents: {gt: 1000000}}
    deny: refunds over 10,000.00 are made by hand
  - name: no-test-customers
    tools: [billing.refund]
    when: {customer.tier: {eq: test}}
    deny: test customers are never refunded
"""
ASKED: dict[str, Any] = {
    "invoice_id": "inv_1",
    "amount_cents": 20000,
    "card_token": "tok_live_4242424242",
    "customer": {"id": "cus_1", "tier": "gold"},
}
SHOWN: dict[str, Any] = {**ASKED, "card_token": REDACTED}
REVIEWERS = ("rita", "omar", "carla", "dora", "fran", "agent")


@dataclass
class Pay:
    http: TestClient
    ledger: Ledger
    db: str
    policies: Path
    tokens: dict[str, str]
    refunds: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])

    def agent(self) -> Guard:
        """A fresh agent (it reads the policy files as they are now)."""
        guard = Guard(policies=self.policies, db=self.db, actor="agent", approval="defer", log_level="error")
        guard.tool(self._refund, name="billing.refund")
        return guard

    def _refund(self, **kw: Any) -> dict[str, str]:
        self.refunds.append(kw)
        return {"refund_id": f"re_{len(self.refunds)}"}

    def ask(self, args: dict[str, Any] | None = None) -> tuple[str, str]:
        """A run whose refund waits for approval: (run id, approval id)."""
        guard = self.agent()
        try:
            with pytest.raises(ApprovalPending) as pending, guard.run("pay") as run:
                guard.tool_named("billing.refund")(**(args or ASKED))  # type: ignore[misc]
            return run.run_id, str(pending.value.approval_id)
        finally:
            guard.close()

    def resume(self, run_id: str, args: dict[str, Any] | None = None) -> Any:
        guard = self.agent()
        try:
            with guard.run("pay", run_id=run_id):
                return guard.tool_named("billing.refund")(**(args or ASKED))  # type: ignore[misc]
        finally:
            guard.close()

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def decide(self, who: str, approval_id: str, **body: Any) -> httpx2.Response:
        return self.http.post(f"/api/approvals/{approval_id}/decision", headers=self.auth(who), json=body)

    def approve(self, who: str, approval_id: str, edited: dict[str, Any] | None = None) -> httpx2.Response:
        """`who` approves the arguments on the table now (or `edited` instead of them)."""
        record = self.ledger.get_approval(approval_id)
        assert record is not None
        on_table = record.approved_args_hash or record.args_hash
        body: dict[str, Any] = {"decision": "approve", "args_hash": on_table}
        if edited is not None:
            body["edited_args"] = edited
        return self.decide(who, approval_id, **body)

    def events(self, run_id: str, to_state: str) -> list[dict[str, Any]]:
        """The details of the run's approval events that moved to `to_state`, oldest first."""
        return [
            json.loads(e.detail)
            for e in self.ledger.events_of(run_id)
            if e.entity == "approval" and e.to_state == to_state
        ]

    def rewrite_policy(self, old: str, new: str) -> None:
        file = self.policies / "pay.yaml"
        text = file.read_text()
        assert old in text
        file.write_text(text.replace(old, new, 1))


@pytest.fixture
def pay(tmp_path: Path, ledger_url: str, shared_key: None) -> Iterator[Pay]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "pay.yaml").write_text(POLICY)
    db = ledger_url
    ledger = Ledger(db)
    tokens = {name: ledger.create_token(name, by="test")[1] for name in REVIEWERS}
    app = create_app(db, policies, session_secret=b"s" * 32, notify_every=None, policies_every=0)
    try:
        yield Pay(TestClient(app), ledger, db, policies, tokens)
    finally:
        app.state.desk.ledger.close()
        ledger.close()


def test_an_edit_a_deny_rule_forbids_is_refused_with_the_rules_reason_and_the_call_keeps_waiting(pay: Pay) -> None:
    run_id, approval_id = pay.ask()
    refused = pay.approve("rita", approval_id, {**SHOWN, "amount_cents": 2_000_000})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "denied"
    assert "refunds over 10,000.00 are made by hand" in refused.json()["detail"]
    after = pay.ledger.get_approval(approval_id)
    assert after is not None and after.state == "pending" and after.approved_args_hash is None
    assert pay.ledger.decisions_of(approval_id) == []
    [record] = pay.events(run_id, "edit_denied")  # the refused edit and the verdict on it are on record
    assert record["verdict"] == "deny" and record["rule"] == "huge-refund"
    assert record["args"]["amount_cents"] == 2_000_000 and record["args"]["card_token"] == REDACTED
    with pytest.raises(ApprovalPending):
        pay.resume(run_id)
    assert pay.refunds == []
    # The agent's own arguments are still on the table, and approving them runs them.
    assert pay.approve("rita", approval_id).json()["state"] == "approved"
    assert pay.resume(run_id) == {"refund_id": "re_1"}
    assert pay.refunds == [ASKED]


def test_an_edit_that_needs_another_role_becomes_the_request_for_that_role_and_the_editors_vote_waits_for_it(
    pay: Pay,
) -> None:
    run_id, approval_id = pay.ask()
    edited = {**SHOWN, "amount_cents": 90000}
    proposed = pay.approve("rita", approval_id, edited)  # rita holds finance; 900.00 needs two cfo approvals
    assert proposed.status_code == 200, proposed.text
    body = proposed.json()
    assert body["state"] == "pending" and body["roles"] == ["cfo"] and body["quorum"] == 2
    assert body["args_hash"] == args_hash(edited)
    assert [(d.reviewer, d.decision) for d in pay.ledger.decisions_of(approval_id)] == [("rita", "edit")]
    [record] = pay.events(run_id, "edited")
    assert (record["verdict"], record["rule"], record["roles"], record["quorum"]) == (
        "approve",
        "big-refund",
        ["cfo"],
        2,
    )
    assert pay.approve("omar", approval_id).status_code == 403  # finance may no longer decide it
    assert pay.approve("agent", approval_id).status_code == 403  # nor the requester, whatever roles it holds
    assert pay.approve("carla", approval_id).json()["state"] == "pending"  # one cfo of two
    with pytest.raises(ApprovalPending):
        pay.resume(run_id)
    done = pay.approve("dora", approval_id)
    assert done.json()["state"] == "approved" and sorted(done.json()["decided_by"]) == ["carla", "dora"]
    assert pay.resume(run_id) == {"refund_id": "re_1"}
    assert pay.refunds == [{**ASKED, "amount_cents": 90000}]  # the edit ran, with the agent's real card token
    [settled] = pay.events(run_id, "approved")
    assert settled["votes"]["counted"] == ["carla", "dora"] and settled["votes"]["roles"] == ["cfo"]


def test_an_editor_who_holds_the_role_the_edit_needs_casts_the_first_vote_of_its_quorum(pay: Pay) -> None:
    run_id, approval_id = pay.ask()
    proposed = pay.approve("fran", approval_id, {**SHOWN, "amount_cents": 90000})
    assert proposed.json()["state"] == "pending" and proposed.json()["roles"] == ["cfo"]
    assert [(d.reviewer, d.decision) for d in pay.ledger.decisions_of(approval_id)] == [("fran", "approve")]
    assert pay.approve("carla", approval_id).json()["state"] == "approved"
    assert pay.resume(run_id) == {"refund_id": "re_1"}
    assert pay.refunds == [{**ASKED, "amount_cents": 90000}]


def _drop(args: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k != key}


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        pytest.param({**SHOWN, "amount_cents": "90000"}, "argument amount_cents is a string", id="amount as text"),
        pytest.param(_drop(SHOWN, "amount_cents"), "argument amount_cents is missing", id="amount removed"),
        pytest.param(
            {**SHOWN, "customer": {"id": "cus_1", "tier": "test"}},
            "test customers are never refunded",
            id="nested field a deny rule forbids",
        ),
        pytest.param({**SHOWN, "customer": "cus_1"}, "send an object", id="nested field not an object"),
        pytest.param(_drop(SHOWN, "customer"), "argument customer.tier is missing", id="nested field removed"),
    ],
)
def test_a_type_confused_or_missing_field_in_an_edit_is_judged_as_an_agents_call_and_never_approved(
    pay: Pay, edit: dict[str, Any], why: str
) -> None:
    run_id, approval_id = pay.ask()
    refused = pay.approve("rita", approval_id, edit)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "denied" and why in refused.json()["detail"]
    after = pay.ledger.get_approval(approval_id)
    assert after is not None and after.state == "pending" and after.approved_args_hash is None
    assert pay.ledger.decisions_of(approval_id) == []
    with pytest.raises(ApprovalPending):
        pay.resume(run_id)
    assert pay.refunds == []


def test_a_vote_of_a_reviewer_taken_off_the_policy_no_longer_counts_towards_the_quorum(pay: Pay) -> None:
    run_id, approval_id = pay.ask({**ASKED, "amount_cents": 90000})  # two cfo approvals
    big = {**ASKED, "amount_cents": 90000}
    assert pay.approve("carla", approval_id).json()["state"] == "pending"
    pay.rewrite_policy("  carla: [cfo]\n", "")
    second = pay.approve("dora", approval_id)
    assert second.status_code == 200, second.text
    assert second.json()["state"] == "pending"  # carla's vote fell with her role
    [_, judged] = pay.events(run_id, "decision:approve")
    assert judged["counted"] == ["dora"] and judged["not_counted"] == {"carla": "holds none of the roles ['cfo'] now"}
    with pytest.raises(ApprovalPending):
        pay.resume(run_id, big)
    assert pay.approve("fran", approval_id).json()["state"] == "approved"
    assert pay.resume(run_id, big) == {"refund_id": "re_1"}
    approval = pay.ledger.get_approval(approval_id)
    assert approval is not None and sorted(approval.decider_list) == ["dora", "fran"]


def test_an_approval_whose_approver_was_taken_off_the_policy_before_the_agent_resumed_does_not_run(pay: Pay) -> None:
    big = {**ASKED, "amount_cents": 90000}
    run_id, approval_id = pay.ask(big)
    assert pay.approve("carla", approval_id).json()["state"] == "pending"
    assert pay.approve("dora", approval_id).json()["state"] == "approved"
    pay.rewrite_policy("  carla: [cfo]\n", "")
    with pytest.raises(CallFailed) as failed:
        pay.resume(run_id, big)
    assert "no longer stands" in str(failed.value) and "carla" in str(failed.value)
    assert pay.refunds == []
    run = pay.ledger.get_run(run_id)
    assert run is not None and run.state == "pending_review"


def test_a_reviewer_of_another_team_gets_the_same_answer_as_for_an_unknown_id(pay: Pay) -> None:
    (pay.policies / "growth.yaml").write_text(
        "team: growth\nreviewers:\n  gus: [marketing]\nrules:\n  - name: reads\n    tools: [crm.get]\n    class: read\n"
    )
    pay.tokens["gus"] = pay.ledger.create_token("gus", by="test")[1]
    run_id, approval_id = pay.ask()
    unknown_approval, unknown_run = "apr_00000000-0000-0000-0000-000000000000", "pay:no-such-event"

    def answer(method: str, path: str, real: str, fake: str) -> tuple[tuple[int, str], tuple[int, str]]:
        body = {"decision": "approve", "args_hash": "sha256:0"} if method == "POST" else None
        theirs = pay.http.request(method, path.format(real), headers=pay.auth("gus"), json=body)
        none = pay.http.request(method, path.format(fake), headers=pay.auth("gus"), json=body)
        return (theirs.status_code, theirs.text.replace(real, "ID")), (none.status_code, none.text.replace(fake, "ID"))

    for method, path, real, fake in [
        ("GET", "/api/approvals/{}", approval_id, unknown_approval),
        ("POST", "/api/approvals/{}/decision", approval_id, unknown_approval),
        ("GET", "/api/runs/{}", run_id, unknown_run),
    ]:
        theirs, none = answer(method, path, real, fake)
        assert theirs == none and theirs[0] == 404, (method, path, theirs)
        assert "pay" not in theirs[1]  # the owning team is never named
    after = pay.ledger.get_approval(approval_id)
    assert after is not None and after.state == "pending"


@pytest.mark.parametrize("spelled", [" Agent", "AGENT", "ａｇｅｎｔ"])  # noqa: RUF001 - full-width on purpose
def test_the_requester_cannot_approve_under_another_spelling_of_their_name(pay: Pay, spelled: str) -> None:
    run_id, approval_id = pay.ask()
    pay.tokens[spelled] = pay.ledger.create_token(spelled, by="test")[1]
    own = pay.approve(spelled, approval_id)
    assert own.status_code == 403 and own.json()["code"] == "self_approval", own.text
    assert pay.ledger.decisions_of(approval_id) == []
    with pytest.raises(ApprovalPending):
        pay.resume(run_id)


def test_two_spellings_of_one_approver_count_once(pay: Pay) -> None:
    _, approval_id = pay.ask({**ASKED, "amount_cents": 90000})
    pay.tokens["Carla "] = pay.ledger.create_token("Carla ", by="test")[1]
    assert pay.approve("carla", approval_id).json()["state"] == "pending"
    again = pay.approve("Carla ", approval_id)
    assert again.status_code == 200 and again.json()["state"] == "pending"  # one person, one vote


def test_the_page_shows_what_is_left_before_expiry_to_the_minute(pay: Pay) -> None:
    _, approval_id = pay.ask()
    pay.http.post("/login", data={"token": pay.tokens["rita"]}, headers={"Sec-Fetch-Site": "same-origin"})
    page = pay.http.get(f"/approvals/{approval_id}").text
    assert "(in 3h 59m)" in page  # expires_after 4h, a moment ago: not "in 3h"
    queue = pay.http.get("/").text
    assert "(in 3h 59m)" in queue


def test_an_approval_while_a_pause_holds_the_call_says_it_runs_when_the_pause_is_lifted(pay: Pay) -> None:
    run_id, approval_id = pay.ask()
    pay.ledger.pause("team", "pay", reason="incident 42", by="oncall")
    done = pay.approve("rita", approval_id)
    assert done.json()["state"] == "approved"
    paused = done.json()["paused"]
    assert "paused by oncall: incident 42" in paused and "guard unpause --team pay" in paused
    pay.http.post("/login", data={"token": pay.tokens["rita"]}, headers={"Sec-Fetch-Site": "same-origin"})
    page = pay.http.get(f"/approvals/{approval_id}?done=approved").text
    assert "may run now" not in page and "runs when the pause is lifted" in page
    pay.ledger.unpause("team", "pay", by="oncall", reason="incident 42 fixed")
    assert pay.http.get(f"/api/approvals/{approval_id}", headers=pay.auth("rita")).json()["paused"] is None
    assert pay.resume(run_id) == {"refund_id": "re_1"}


_MISSING: Any = object()
_AMOUNTS = st.one_of(
    st.integers(-10, 3_000_000),
    st.sampled_from([50000, 50001, 1_000_000, 1_000_001]),
    st.floats(-1e7, 1e7, allow_nan=False),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.just(_MISSING),
)
_CUSTOMERS = st.one_of(
    st.fixed_dictionaries(
        {"id": st.just("cus_1"), "tier": st.one_of(st.sampled_from(["gold", "test"]), st.integers())}
    ),
    st.just({"id": "cus_1"}),
    st.text(max_size=4),
    st.just(_MISSING),
)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(amount=_AMOUNTS, customer=_CUSTOMERS, editor=st.sampled_from(REVIEWERS))
def test_for_any_edit_what_runs_was_approved_under_the_policys_verdict_for_those_exact_arguments(
    pay: Pay, amount: Any, customer: Any, editor: str
) -> None:
    policy = policy_from_text(POLICY, source="pay.yaml")
    run_id, approval_id = pay.ask()
    edited = {k: v for k, v in {**SHOWN, "amount_cents": amount, "customer": customer}.items() if v is not _MISSING}
    proposed = pay.approve(editor, approval_id, edited)
    assert proposed.status_code in (200, 403, 422), proposed.text
    for who in REVIEWERS:  # everyone then approves what is on the table, as far as each may
        record = pay.ledger.get_approval(approval_id)
        assert record is not None
        if record.state != "pending":
            break
        assert pay.approve(who, approval_id).status_code in (200, 403, 409)
    before = len(pay.refunds)
    with contextlib.suppress(ApprovalPending, CallFailed):  # not approved (yet), or no longer: nothing runs
        pay.resume(run_id)
    ran = pay.refunds[before:]
    approval = pay.ledger.get_approval(approval_id)
    assert approval is not None
    if not ran:
        assert approval.state != "approved" or pay.ledger.call_state(approval.call_id) != "completed"
        return
    [args] = ran
    # What ran is exactly what the approval binds to: the agent's call, or the edit on the table (whose hash is
    # of its redacted form), with the agent's secret values.
    if approval.approved_args_json is not None:
        assert args_hash(redact(args, {"card_token"})) == approval.approved_args_hash
    else:
        assert args == ASKED and approval.approved_args_hash == approval.args_hash
    assert args["card_token"] == ASKED["card_token"]
    # ... and those arguments were allowed, with the approvals their own rule needs.
    verdict = policy.classify("billing.refund", args)
    assert verdict.verdict is not Verdict.DENY, verdict.reason
    gate = verdict.approval
    roles, quorum = (set(gate.roles), gate.quorum) if gate is not None else (set(approval.role_list), 1)
    approvers = approval.decider_list
    assert len({identity(r) for r in approvers}) >= quorum
    assert all(policy.roles_of(r) & roles for r in approvers), (approvers, roles)
    assert "agent" not in approvers  # never the requester
