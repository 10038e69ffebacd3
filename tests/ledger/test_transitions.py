"""The transition table is the one source of truth, and a real ledger never holds a state outside it."""

from __future__ import annotations

import shutil
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)
from ledger_support import AGENT, TEAM, call_history, history_problem, request

from guard.canonical import args_hash
from guard.errors import ApprovalDecisionError, CallFailed, CallInDoubt, IdempotencyConflict, IllegalTransition
from guard.ledger import DecisionResult, Ledger, RunClose
from guard.ledger.states import (
    CALL_TRANSITIONS,
    KEY_RELEASING_STATES,
    RUN_TRANSITIONS,
    CallState,
    RunState,
    check_call_move,
    check_run_move,
)

C = CallState
R = RunState
S = TypeVar("S")


def reachable(table: Mapping[S, frozenset[S]], start: S) -> set[S]:
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in table[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# -- the table itself -----------------------------------------------------------------------------------------


@given(src=st.sampled_from([None, *CallState]), dst=st.sampled_from(list(CallState)))
def test_check_call_move_accepts_exactly_the_moves_in_the_table(src: CallState | None, dst: CallState) -> None:
    if dst in CALL_TRANSITIONS[src]:
        check_call_move("call_x", src, dst)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_call_move("call_x", src, dst)
        assert (info.value.entity, info.value.from_state, info.value.to_state) == ("call", src, dst)


@given(src=st.sampled_from([None, *RunState]), dst=st.sampled_from(list(RunState)))
def test_check_run_move_accepts_exactly_the_moves_in_the_table_or_staying_put(
    src: RunState | None, dst: RunState
) -> None:
    if dst in RUN_TRANSITIONS[src] or src == dst:
        check_run_move("run_x", src, dst)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_run_move("run_x", src, dst)
        assert (info.value.entity, info.value.from_state, info.value.to_state) == ("run", src, dst)


def test_every_call_state_is_a_key_of_the_table_and_reachable_from_no_row() -> None:
    assert set(CALL_TRANSITIONS) == {None, *CallState}
    assert reachable(CALL_TRANSITIONS, None) == {None, *CallState}


def test_every_run_state_is_a_key_of_the_table_and_reachable_from_no_row() -> None:
    assert set(RUN_TRANSITIONS) == {None, *RunState}
    assert reachable(RUN_TRANSITIONS, None) == {None, *RunState}


def test_states_that_release_the_idempotency_key_are_final_and_never_follow_started() -> None:
    after_start = reachable(CALL_TRANSITIONS, C.STARTED)
    for state in KEY_RELEASING_STATES:
        assert CALL_TRANSITIONS[state] == frozenset()
        assert not any(state in CALL_TRANSITIONS[src] for src in after_start)


def run_history_problem(ledger: Ledger, run_id: str) -> str | None:
    """None when the run's events walk RUN_TRANSITIONS from `None` and end at the run's current state."""
    src: RunState | None = None
    for event in (e for e in ledger.events_of(run_id) if e.entity == "run"):
        if (None if event.from_state is None else RunState(event.from_state)) != src:
            return f"event {event.id} starts at {event.from_state}, but the run was {src}"
        dst = RunState(event.to_state)
        if dst != src and dst not in RUN_TRANSITIONS[src]:
            return f"event {event.id} moves {src} -> {dst}, not in RUN_TRANSITIONS"
        src = dst
    record = ledger.get_run(run_id)
    assert record is not None
    return None if record.state == src else f"the run's events end at {src}, but the run row says {record.state}"


# -- a real ledger under random operations --------------------------------------------------------------------

ROLES = {
    "alice": frozenset({"finance"}),
    "bob": frozenset({"finance"}),
    "sam": frozenset({"support"}),
    AGENT: frozenset({"finance"}),
}
ARGS = [{"n": 1}, {"n": 2}]
KEYS = [None, "k1", "k2"]


@dataclass
class ModelCall:
    call_id: str
    run_id: str
    state: C
    key: str | None
    args_hash: str
    approval_id: str | None = None


@dataclass
class ModelApproval:
    approval_id: str
    call_id: str
    quorum: int
    due: bool  # the expiry has already passed
    state: str = "pending"
    decisions: dict[str, str] = field(default_factory=dict[str, str])


class LedgerMachine(RuleBasedStateMachine):
    """Random offer / attempt / complete / fail / decide / expire / move-run sequences on a SQLite file,
    checked against a small model of what the ledger must hold after each step."""

    template: ClassVar[Path]
    workdir: ClassVar[Path]

    calls = Bundle("calls")
    approvals = Bundle("approvals")

    def __init__(self) -> None:
        super().__init__()
        path = self.workdir / f"{uuid.uuid4().hex}.db"
        shutil.copyfile(self.template, path)
        self.ledger = Ledger(f"sqlite:///{path}")
        self.runs: dict[str, R] = {}
        for run_id in ("r0", "r1"):
            self.ledger.open_run(run_id, TEAM, actor=AGENT)
            self.runs[run_id] = R.RUNNING
        self.model: dict[str, ModelCall] = {}
        self.model_approvals: dict[str, ModelApproval] = {}

    def teardown(self) -> None:
        self.ledger.close()

    # -- helpers --

    def _holder(self, key: str | None) -> ModelCall | None:
        if key is None:
            return None
        return next((c for c in self.model.values() if c.key == key), None)

    def _settle_not_run(self, call: ModelCall, state: C) -> None:
        call.state = state
        call.key = None
        if self.runs[call.run_id] is R.PAUSED:
            self.runs[call.run_id] = R.RUNNING

    # -- rules --

    @rule(
        target=calls,
        run_id=st.sampled_from(["r0", "r1"]),
        verdict=st.sampled_from(["allow", "approve", "deny"]),
        key=st.sampled_from(KEYS),
        args=st.sampled_from(ARGS),
        quorum=st.sampled_from([1, 2]),
        due=st.booleans(),
    )
    def offer(
        self,
        run_id: str,
        verdict: Literal["allow", "approve", "deny"],
        key: str | None,
        args: dict[str, int],
        quorum: int,
        due: bool,
    ) -> str:
        req = request(run_id, verdict=verdict, key=key, args=args, quorum=quorum, expires_after=0.0 if due else 3600.0)
        run_open = self.runs[run_id] in (R.RUNNING, R.PAUSED)
        holder = self._holder(key)
        if not run_open or verdict == "deny":
            # A refused call still returns a completed key's recorded result: that runs nothing.
            holder = holder if holder is not None and holder.state is C.COMPLETED else None
        if holder is not None and holder.args_hash != req.args_hash:
            with pytest.raises(IdempotencyConflict):
                self.ledger.offer(req)
            return holder.call_id
        if holder is not None and holder.state in (C.STARTED, C.IN_DOUBT):
            with pytest.raises(CallInDoubt):
                self.ledger.offer(req)
            return holder.call_id
        if holder is not None and holder.state not in (C.COMPLETED, C.AWAITING_APPROVAL, C.APPROVED):
            with pytest.raises(CallFailed):
                self.ledger.offer(req)
            return holder.call_id
        offer = self.ledger.offer(req)
        if holder is not None:
            assert offer.call_id == holder.call_id
            expected_kind = {C.COMPLETED: "completed", C.AWAITING_APPROVAL: "awaiting", C.APPROVED: "started"}[
                holder.state
            ]
            assert offer.kind == expected_kind
            if holder.state is C.APPROVED:
                holder.state = C.STARTED
                if self.runs[holder.run_id] is R.PAUSED:
                    self.runs[holder.run_id] = R.RUNNING
            return holder.call_id
        assert offer.call_id == req.call_id
        if not run_open or verdict == "deny":
            assert offer.kind == "denied"
            assert offer.brake == (None if run_open else "run")
            self.model[req.call_id] = ModelCall(req.call_id, run_id, C.DENIED, None, req.args_hash)
        elif verdict == "approve":
            assert offer.kind == "awaiting" and offer.approval_id is not None
            self.model[req.call_id] = ModelCall(
                req.call_id, run_id, C.AWAITING_APPROVAL, key, req.args_hash, offer.approval_id
            )
            self.model_approvals[offer.approval_id] = ModelApproval(offer.approval_id, req.call_id, quorum, due)
            if self.runs[run_id] is R.RUNNING:
                self.runs[run_id] = R.PAUSED
        else:
            assert offer.kind == "started"
            self.model[req.call_id] = ModelCall(req.call_id, run_id, C.STARTED, key, req.args_hash)
        return req.call_id

    def token(self, call_id: str) -> int:
        """The lease token the worker holding the call got (what every write on a started call carries)."""
        record = self.ledger.get_call(call_id)
        return record.lease_token if record is not None else 0

    @rule(call_id=calls)
    def record_attempt(self, call_id: str) -> None:
        call = self.model[call_id]
        if call.state is C.STARTED:
            self.ledger.record_attempt(call.run_id, call_id, self.token(call_id), 1, "boom", AGENT)
        else:
            with pytest.raises(IllegalTransition):
                self.ledger.record_attempt(call.run_id, call_id, self.token(call_id), 1, "boom", AGENT)

    @rule(call_id=calls)
    def complete(self, call_id: str) -> None:
        call = self.model[call_id]
        if call.state is C.STARTED:
            self.ledger.complete(
                call.run_id,
                call_id,
                token=self.token(call_id),
                result_json="{}",
                external_ids={"x": "1"},
                attempts=1,
                actor=AGENT,
            )
            call.state = C.COMPLETED
        else:
            with pytest.raises(IllegalTransition):
                self.ledger.complete(
                    call.run_id,
                    call_id,
                    token=self.token(call_id),
                    result_json="{}",
                    external_ids={},
                    attempts=1,
                    actor=AGENT,
                )

    @rule(call_id=calls, state=st.sampled_from([C.FAILED, C.IN_DOUBT]), halt=st.booleans())
    def fail(self, call_id: str, state: C, halt: bool) -> None:
        call = self.model[call_id]
        close = RunClose(R.PENDING_REVIEW, status_label="x_failed", requires_review=True) if halt else None
        run_state = self.runs[call.run_id]
        run_ok = not halt or run_state is R.PENDING_REVIEW or R.PENDING_REVIEW in RUN_TRANSITIONS[run_state]
        if call.state is C.STARTED and run_ok:
            self.ledger.fail(
                call.run_id,
                call_id,
                token=self.token(call_id),
                state=state,
                error="boom",
                attempts=1,
                actor=AGENT,
                external_ids={},
                run=close,
            )
            call.state = state
            if halt:
                self.runs[call.run_id] = R.PENDING_REVIEW
        else:
            with pytest.raises(IllegalTransition):
                self.ledger.fail(
                    call.run_id,
                    call_id,
                    token=self.token(call_id),
                    state=state,
                    error="boom",
                    attempts=1,
                    actor=AGENT,
                    external_ids={},
                    run=close,
                )

    @rule(target=approvals, call_id=calls)
    def approval_of(self, call_id: str) -> str:
        approval_id = self.model[call_id].approval_id
        return approval_id or "apr_missing"

    @rule(
        approval_id=approvals, reviewer=st.sampled_from(sorted(ROLES)), decision=st.sampled_from(["approve", "reject"])
    )
    def decide(self, approval_id: str, reviewer: str, decision: Literal["approve", "reject"]) -> None:
        apr = self.model_approvals.get(approval_id)

        def act() -> DecisionResult:
            return self.ledger.decide(
                approval_id, reviewer=reviewer, decision=decision, reviewer_roles=ROLES[reviewer], reason="because"
            )

        def refused(code: str) -> None:
            with pytest.raises(ApprovalDecisionError) as info:
                act()
            assert info.value.code == code

        if apr is None:
            return refused("not_found")
        if apr.decisions.get(reviewer) == decision:
            result = act()
            assert result.repeat
            return None
        if apr.state != "pending" or reviewer in apr.decisions:
            return refused("already_decided")
        call = self.model[apr.call_id]
        if apr.due:
            refused("expired")
            apr.state = "expired"
            self._settle_not_run(call, C.EXPIRED)
            return None
        if reviewer == AGENT:
            return refused("self_approval")
        if "finance" not in ROLES[reviewer]:
            return refused("forbidden")
        act()
        apr.decisions[reviewer] = decision
        if decision == "reject":
            apr.state = "rejected"
            self._settle_not_run(call, C.REJECTED)
        elif sum(d == "approve" for d in apr.decisions.values()) >= apr.quorum:
            apr.state = "approved"
            call.state = C.APPROVED
        return None

    @rule(approval_id=approvals)
    def expire_if_due(self, approval_id: str) -> None:
        apr = self.model_approvals.get(approval_id)
        if apr is None:
            with pytest.raises(ApprovalDecisionError):
                self.ledger.expire_if_due(approval_id)
            return
        expect = apr.state == "pending" and apr.due
        assert self.ledger.expire_if_due(approval_id) is expect
        if expect:
            apr.state = "expired"
            self._settle_not_run(self.model[apr.call_id], C.EXPIRED)

    @rule(run_id=st.sampled_from(["r0", "r1"]), dst=st.sampled_from(list(RunState)))
    def move_run(self, run_id: str, dst: R) -> None:
        src = self.runs[run_id]
        if src == dst or dst in RUN_TRANSITIONS[src]:
            self.ledger.move_run(run_id, RunClose(dst), actor="operator")
            self.runs[run_id] = dst
        else:
            with pytest.raises(IllegalTransition):
                self.ledger.move_run(run_id, RunClose(dst), actor="operator")

    @rule(call_id=consumes(calls))
    def forget(self, call_id: str) -> None:
        """Keeps the bundle small so later rules hit recent calls more often."""

    # -- what must hold after every step --

    @invariant()
    def chain_verifies(self) -> None:
        report = self.ledger.verify_chain()
        assert report.ok, report

    @invariant()
    def calls_match_the_model_and_their_history_walks_the_table(self) -> None:
        stored = {c.call_id: c for run_id in self.runs for c in self.ledger.calls_of(run_id)}
        assert set(stored) == set(self.model)
        for call_id, call in stored.items():
            expected = self.model[call_id]
            assert call.state == expected.state, call_id
            assert call.idempotency_key == expected.key, call_id
            problem = history_problem(call_history(self.ledger, call.run_id, call_id), call.state)
            assert problem is None, problem

    @invariant()
    def runs_and_approvals_match_the_model(self) -> None:
        for run_id, state in self.runs.items():
            record = self.ledger.get_run(run_id)
            assert record is not None and record.state == state, run_id
            problem = run_history_problem(self.ledger, run_id)
            assert problem is None, problem
        for approval_id, apr in self.model_approvals.items():
            record = self.ledger.get_approval(approval_id)
            assert record is not None and record.state == apr.state, approval_id


def test_a_ledger_under_random_operations_holds_only_legal_states_and_a_valid_chain(
    migrated_template: Path, tmp_path: Path
) -> None:
    LedgerMachine.template = migrated_template
    LedgerMachine.workdir = tmp_path
    run_state_machine_as_test(LedgerMachine, settings=settings(max_examples=60, stateful_step_count=30, deadline=None))


def test_a_key_offered_again_with_other_arguments_is_a_conflict_naming_the_first_call(ledger: Ledger) -> None:
    ledger.open_run("r", TEAM, actor=AGENT)
    first = ledger.offer(request("r", key="k", args={"n": 1}))
    with pytest.raises(IdempotencyConflict) as info:
        ledger.offer(request("r", key="k", args={"n": 2}))
    assert info.value.call_id == first.call_id
    assert info.value.recorded_hash == args_hash({"n": 1})


def test_an_operator_move_of_a_running_run_is_one_event_in_its_history(ledger: Ledger) -> None:
    ledger.open_run("r", TEAM, actor=AGENT)
    ledger.move_run("r", RunClose(R.HALTED, status_label="stopped"), actor="operator")
    assert run_history_problem(ledger, "r") is None


def test_a_run_paused_by_an_approval_request_has_that_move_in_its_event_history(ledger: Ledger) -> None:
    ledger.open_run("r", TEAM, actor=AGENT)
    ledger.offer(request("r", verdict="approve"))
    run_record = ledger.get_run("r")
    assert run_record is not None and run_record.state == "paused"
    ledger.move_run("r", RunClose(R.HALTED, status_label="stopped"), actor="operator")
    assert run_history_problem(ledger, "r") is None
