"""The invariants of a kill test, checked over the ledger and the witness together.

After a kill, a fresh worker recovers and the same event runs again; then:

(a) no duplicate effect: at most one effect per idempotency key in the witness (the message tool is not
    idempotent there, so a second send is a second row); a non-repeat-safe call that reached the witness
    again with a key that already had its effect is counted apart, as a blind re-run;
(b) no lost record: every effect maps (by key) to a ledger call whose state tells the truth about it:
    `completed` with the effect's id, `rolled_back` with the effect undone, or still being looked at
    (`in_doubt`, `rolling_back`, `rollback_failed`) in a run that waits for review; and no completed call
    names an effect the witness does not have;
(c) only legal transitions: each call's and run's events form a path in CALL_TRANSITIONS / RUN_TRANSITIONS,
    each starting where the one before ended, ending in the row's state;
(d) the event chain verifies;
(e) nothing is left in flight: no call `started` or `rolling_back`, no run `rolling_back`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guard.ledger import CallRecord, EventRecord, Ledger
from guard.ledger.states import CALL_TRANSITIONS, RUN_TRANSITIONS, CallState, RunState
from tests.chaos.witness import Effect, Witness

__all__ = ["EFFECT_ID_FIELD", "Check", "Violation", "check", "history_violations"]

# Witness effect kind -> the external-id kind the ledger records for it.
EFFECT_ID_FIELD = {"contact": "contact", "charge": "charge", "message": "message"}
NOT_REPEAT_SAFE = frozenset({"compensable", "irreversible"})
IN_FLIGHT_CALL = frozenset({CallState.STARTED, CallState.ROLLING_BACK})
UNDER_REVIEW_CALL = frozenset({CallState.IN_DOUBT, CallState.ROLLING_BACK, CallState.ROLLBACK_FAILED})


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: `duplicate`, `blind_rerun`, `lost`, `illegal`, `started` or `chain`."""

    kind: str
    detail: str


@dataclass
class Check:
    """The figures of one check, and every violation with what it is about."""

    effects: int = 0
    calls: int = 0
    duplicates: int = 0
    blind_reruns: int = 0
    lost: int = 0
    illegal: int = 0
    left_started: int = 0
    chain_ok: bool = True
    reconciled: int = 0
    to_review: int = 0
    effect_states: Counter[str] = field(default_factory=Counter[str])  # where each effect's record stands
    repeated_repairs: int = 0  # set by a repair scenario (tests.chaos.repairs): refunds that reached the witness again
    violations: list[Violation] = field(default_factory=list[Violation])

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, kind: str, detail: str) -> None:
        self.violations.append(Violation(kind, detail))

    def summary(self) -> dict[str, Any]:
        return {
            "effects": self.effects,
            "calls": self.calls,
            "duplicates": self.duplicates,
            "blind_reruns": self.blind_reruns,
            "lost": self.lost,
            "illegal": self.illegal,
            "left_started": self.left_started,
            "chain_ok": self.chain_ok,
            "reconciled": self.reconciled,
            "to_review": self.to_review,
            "effect_states": dict(self.effect_states),
        }


def check(ledger: Ledger, witness: Witness) -> Check:
    """Check (a)-(e) over every run in `ledger` and every effect in `witness`."""
    out = Check()
    runs = ledger.list_runs(limit=100_000)
    run_state = {r.run_id: r.state for r in runs}
    calls = [c for r in runs for c in ledger.calls_of(r.run_id)]
    events = {r.run_id: ledger.events_of(r.run_id) for r in runs}
    out.calls = len(calls)
    by_key: dict[str, list[CallRecord]] = defaultdict(list)
    for c in calls:
        if c.offered_key is not None:
            by_key[c.offered_key].append(c)
    effects = witness.effects()
    out.effects = len(effects)
    _duplicates(out, effects, witness, by_key)
    _lost(out, effects, by_key, run_state)
    for r in runs:
        for v in history_violations(
            events[r.run_id], {c.call_id: c.state for c in calls if c.run_id == r.run_id}, r.run_id, r.state
        ):
            out.add("illegal", v)
            out.illegal += 1
    report = ledger.verify_chain()
    out.chain_ok = report.ok
    if not report.ok:
        out.add("chain", f"event chain breaks at row {report.bad_id}: {report.problem}")
    for c in calls:
        if c.state in IN_FLIGHT_CALL:
            out.left_started += 1
            out.add("started", f"call {c.call_id} ({c.tool}) left {c.state} in run {c.run_id} ({run_state[c.run_id]})")
    for r in runs:
        if r.state == RunState.ROLLING_BACK:
            out.left_started += 1
            out.add("started", f"run {r.run_id} left rolling_back")
    out.reconciled = _reconciled(events)
    out.to_review = sum(1 for r in runs if r.state == RunState.PENDING_REVIEW)
    return out


def _duplicates(out: Check, effects: list[Effect], witness: Witness, by_key: dict[str, list[CallRecord]]) -> None:
    per_key = Counter((e.kind, e.key) for e in effects)
    for (kind, key), n in sorted(per_key.items()):
        if n > 1:
            out.duplicates += n - 1
            tools = sorted({c.tool for c in by_key.get(key, [])})
            out.add("duplicate", f"{n} {kind} effects under one key {key} ({', '.join(tools) or 'no ledger call'})")
    for a in witness.attempts():
        if a.outcome != "duplicate_attempt" or a.key is None:
            continue
        owners = [c for c in by_key.get(a.key, []) if c.side_effect in NOT_REPEAT_SAFE]
        if owners:
            out.blind_reruns += 1
            out.add(
                "blind_rerun",
                f"{a.tool} reached the witness again (pid {a.pid}) with key {a.key} whose effect "
                f"{a.effect_id} already existed; call {owners[0].call_id} is {owners[0].state}",
            )


def _lost(out: Check, effects: list[Effect], by_key: dict[str, list[CallRecord]], run_state: Mapping[str, str]) -> None:
    seen: set[str] = set()
    for e in effects:
        seen.add(e.effect_id)
        owners = by_key.get(e.key, [])
        if not owners:
            _lose(out, "no_call", f"{e.kind} effect {e.effect_id} (key {e.key}) has no ledger call")
            continue
        c = owners[0]
        state = CallState(c.state)
        recorded = c.external_id_map.get(EFFECT_ID_FIELD.get(e.kind, e.kind))
        review = run_state.get(c.run_id) == RunState.PENDING_REVIEW
        if state is CallState.COMPLETED:
            if recorded != e.effect_id:
                _lose(
                    out,
                    "completed_wrong_id",
                    f"call {c.call_id} ({c.tool}) completed recording {recorded!r}, the witness holds {e.effect_id}",
                )
            elif e.undone_at is not None:
                _lose(
                    out,
                    "completed_but_undone",
                    f"call {c.call_id} ({c.tool}) completed, but its effect "
                    f"{e.effect_id} was undone and no rollback is recorded",
                )
            else:
                out.effect_states["completed"] += 1
        elif state is CallState.ROLLED_BACK:
            if e.undone_at is None:
                _lose(
                    out,
                    "rolled_back_not_undone",
                    f"call {c.call_id} ({c.tool}) rolled_back but effect {e.effect_id} is still in place",
                )
            else:
                out.effect_states["rolled_back"] += 1
        elif state in UNDER_REVIEW_CALL and review:
            out.effect_states[f"{state}/pending_review"] += 1
        else:
            where = f"run {c.run_id} is {run_state.get(c.run_id)}"
            _lose(
                out,
                f"{state}_with_effect",
                f"call {c.call_id} ({c.tool}) is {state} ({where}) but the witness holds its effect {e.effect_id}",
            )
    for owners in by_key.values():
        for c in owners:
            for kind, value in c.external_id_map.items():
                if kind in EFFECT_ID_FIELD.values() and c.state == CallState.COMPLETED and value not in seen:
                    _lose(
                        out,
                        "phantom",
                        f"call {c.call_id} ({c.tool}) completed naming {kind} {value}, which the witness does not hold",
                    )


def _lose(out: Check, label: str, detail: str) -> None:
    out.lost += 1
    out.effect_states[label] += 1
    out.add("lost", detail)


def history_violations(
    events: list[EventRecord], call_states: dict[str, str], run_id: str, run_state: str
) -> list[str]:
    """Every step of the run's and its calls' histories that is not a legal transition from the last state."""
    found: list[str] = []
    last_call: dict[str, str | None] = {}
    last_run: str | None = None
    for e in events:
        if e.entity == "call" and e.call_id is not None:
            prev = last_call.get(e.call_id)
            if e.from_state != prev:
                found.append(f"call {e.call_id}: event {e.id} starts from {e.from_state}, the call was {prev}")
            for from_state, to_state in e.moves:  # a new call's first event names its whole path
                src = None if from_state is None else CallState(from_state)
                if CallState(to_state) not in CALL_TRANSITIONS[src]:
                    found.append(
                        f"call {e.call_id}: event {e.id} {from_state or 'new'} -> {to_state} is not in "
                        f"CALL_TRANSITIONS ({_why(e)})"
                    )
            last_call[e.call_id] = e.to_state
        elif e.entity == "run":
            src_run = None if e.from_state is None else RunState(e.from_state)
            if e.from_state != last_run:
                found.append(f"run {run_id}: event {e.id} starts from {e.from_state}, the run was {last_run}")
            if e.to_state != e.from_state and RunState(e.to_state) not in RUN_TRANSITIONS[src_run]:
                found.append(
                    f"run {run_id}: event {e.id} {e.from_state or 'new'} -> {e.to_state} is not in "
                    f"RUN_TRANSITIONS ({_why(e)})"
                )
            last_run = e.to_state
    for call_id, state in call_states.items():
        if last_call.get(call_id) != state:
            found.append(f"call {call_id} is {state} but its events end at {last_call.get(call_id)}")
    if last_run != run_state:
        found.append(f"run {run_id} is {run_state} but its events end at {last_run}")
    return found


def _why(e: EventRecord) -> str:
    try:
        detail: Any = json.loads(e.detail)
    except ValueError:
        return e.detail[:80]
    return f"by {e.actor}: {json.dumps(detail)[:120]}"


def _reconciled(events: dict[str, list[EventRecord]]) -> int:
    """Calls settled by a reconcile check: moved out of `in_doubt` to `completed` (found) or `started`/`failed`
    (confirmed absent), or completed from `started` with a `reconciled` note (found in the worker itself)."""
    settled: set[str] = set()
    for run_events in events.values():
        for e in run_events:
            if e.entity != "call" or e.call_id is None:
                continue
            out_of_doubt = e.from_state == CallState.IN_DOUBT and e.to_state in (
                CallState.COMPLETED,
                CallState.STARTED,
                CallState.FAILED,
            )
            if out_of_doubt or '"reconciled"' in e.detail:
                settled.add(e.call_id)
    return len(settled)
