"""Crash recovery: resolve what a dead worker left behind, never re-running anything blindly.

- A call left `started` (its worker's lease ran out, or `stale_after` says it is dead) is taken over with a
  new fencing token. A repeat-safe call (read, idempotent) runs again with the same key. Any other call
  becomes `in_doubt` and goes through its tool's reconcile check: found -> `completed` with what was found;
  confirmed absent -> it runs once; no check or no answer -> its run halts in `pending_review`.
- A call already `in_doubt` gets its reconcile check again (the check may answer now). When it settles, a
  run that waited for review because of it moves on, or says what is left (`settled_runs.after_settled`).
- The reconcile step (`ask_reconcile`, `record_found`, `run_once`) is the one an operator's
  `guard runs retry-call` takes too, so a call is settled the same way whoever asks.
- A started call whose worker's lease is still live is left alone and listed in `RecoveryReport.held`: the
  dead worker's lease must run out first, unless a person names that worker dead (`dead_workers`).
- A run left `rolling_back` resumes its saga; compensations are keyed, so none runs twice.
Arguments with redacted secrets cannot be replayed from the ledger: such calls go to review instead.

Several recoveries may run at once (workers starting together, `guard recover` beside them). Each takes a call
over with a compare-and-set on its lease token before it acts on it, an in-doubt call included; a call whose
live lease another recoverer holds, or that another changed first, is skipped with a note (`skipped`), and the
pass goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from guard.canonical import REDACTED, redact, to_json
from guard.crash import crash_point
from guard.errors import CallOutcomeError, IllegalTransition
from guard.ledger import CallRecord, CallRequest, CallState, Offer, RunClose, RunState
from guard.policy import SideEffectClass
from guard.runtime import driver
from guard.runtime.callpath import CallPath
from guard.runtime.context import RunScope
from guard.runtime.failure import disagreement, reconcile
from guard.runtime.hooks import Found, NotFound, ReconcileContext, ToolSpec
from guard.runtime.saga import failure_of
from guard.runtime.settled_runs import after_settled
from guard.runtime.steps import CallInput, Prepared

__all__ = [
    "Held",
    "RecoveryReport",
    "Unknown",
    "ask_reconcile",
    "record_found",
    "recover",
    "repeat_safe",
    "replayable",
    "run_claimed",
    "run_once",
]

C = CallState
# The run states an unsettled in-doubt call sends to review (a run already there, or closed, stays as it is).
_TO_REVIEW = frozenset({RunState.RUNNING, RunState.PAUSED, RunState.ROLLING_BACK, RunState.HALTED})


@dataclass(slots=True)
class RecoveryReport:
    """What `recover` did, counted; `notes` say why each call that went to review went there."""

    claimed: int = 0
    retried: int = 0
    reconciled: int = 0
    ran_once: int = 0
    to_review: int = 0
    compensations: int = 0
    skipped: int = 0  # calls and runs another recoverer took first
    notes: list[str] = field(default_factory=list[str])
    held: list[Held] = field(default_factory=list["Held"])  # started calls left alone: their worker looks alive

    def lost(self, what: str, why: str) -> None:
        self.skipped += 1
        self.notes.append(f"{what}: skipped, {why}")


@dataclass(frozen=True, slots=True)
class Held:
    """A started call recovery left alone because its worker's lease (or sign of life) has not run out."""

    run_id: str
    call_id: str
    seq: int
    tool: str
    worker: str | None
    until: float | None  # when recovery may take it over (epoch seconds); None: unknown


def recover(path: CallPath, *, stale_after: float | None = None, dead_workers: Collection[str] = ()) -> RecoveryReport:
    """Resolve calls left `started` or `in_doubt` and runs left `rolling_back`.

    Args:
        stale_after: None takes over calls whose lease ran out; a number takes over calls with no sign of
            life for that many seconds by the lease clock (the database's on PostgreSQL, whatever this host's
            clock says; 0: every started call not held by this worker; use it only when every
            other worker is known dead, e.g. after its process was killed: two recoveries at once must rely on
            leases, or one may take over a call the other is running).
        dead_workers: worker ids a person knows are dead (their process is gone): their calls are taken over
            now, whatever their lease says. Every other worker's live lease is still respected.

    The calls left alone because their worker may be alive are in `RecoveryReport.held`, with the time their
    lease runs out.
    """
    report = RecoveryReport()
    # Leases and signs of life are judged by the clock that wrote them: the database's on PostgreSQL (a started
    # call's `updated_at` is written by it), this worker's on SQLite; never by a worker's clock against another's.
    lease_now = path.ledger.lease_now()
    seen: set[str] = set()
    dead = frozenset(dead_workers)
    for call in path.ledger.calls_in_state((C.STARTED,)):
        if path.heartbeat.holds(call.call_id):
            continue
        alive = (
            (call.lease_expires_at is not None and call.lease_expires_at > lease_now)
            if stale_after is None
            else call.updated_at > lease_now - stale_after
        )
        if alive and call.lease_owner not in dead:
            until = call.lease_expires_at if stale_after is None else call.updated_at + stale_after
            report.held.append(Held(call.run_id, call.call_id, call.seq, call.tool, call.lease_owner, until))
            continue
        seen.add(call.call_id)
        # Taken over by its lease only: the claim checks again, in its own statement, that the lease ran out.
        ran_out = stale_after is None and call.lease_owner not in dead
        _contended(report, _name(call), lambda c=call, r=ran_out: _started(path, c, report, lease_ran_out=r))
    for call in path.ledger.calls_in_state((C.IN_DOUBT,)):
        if call.call_id not in seen:
            _contended(report, _name(call), lambda c=call: _take_in_doubt(path, c, report))
    for run in path.ledger.list_runs(state=RunState.ROLLING_BACK, limit=10_000):
        failed = next(
            (
                c
                for c in path.ledger.calls_of(run.run_id)
                if c.state in (C.FAILED, C.IN_DOUBT) and c.compensates_call_id is None
            ),
            None,
        )
        if _contended(
            report,
            f"run {run.run_id}",
            lambda r=run, f=failed: driver.compensate_run(
                path,
                r.run_id,
                failure=failure_of(f) or r.error_summary or "a saga was interrupted",
                failed_tool=f.tool if f is not None else "run",
                actor=_actor(path),
            ),
        ):
            report.compensations += 1
    return report


def _name(call: CallRecord) -> str:
    return f"{call.run_id} #{call.seq} {call.tool}"


def _contended(report: RecoveryReport, what: str, step: Callable[[], object]) -> bool:
    """Run one item of the pass; a compare-and-set lost to another recoverer (or worker) skips that item
    with a note instead of ending the pass. True when the step ran to its end."""
    try:
        step()
    except IllegalTransition as exc:
        report.lost(what, f"another worker changed it first ({exc})")
        return False
    return True


def _take_in_doubt(path: CallPath, call: CallRecord, report: RecoveryReport) -> None:
    """Take an in-doubt call over (a new lease token) before its reconcile check, unless another recoverer
    holds a live lease on it: two recoverers never settle one call."""
    fresh = path.ledger.get_call(call.call_id)
    if fresh is None or fresh.state != C.IN_DOUBT:
        return
    holder = fresh.lease_owner
    other = holder is not None and holder != path.worker_id
    if other and fresh.lease_expires_at is not None and fresh.lease_expires_at > path.ledger.lease_now():
        report.lost(_name(fresh), f"{holder} is reconciling it")
        return
    token = path.ledger.claim(fresh, worker=path.worker_id, ttl=path.lease_ttl, actor=_actor(path), lease_ran_out=other)
    if token is None:
        report.lost(_name(fresh), "another recoverer took it first")
        return
    taken = path.ledger.get_call(call.call_id)
    if taken is not None:
        _in_doubt(path, taken, report)


def _actor(path: CallPath) -> str:
    return f"recovery:{path.worker_id}"


def repeat_safe(path: CallPath, call: CallRecord) -> bool:
    """Whether recovery or an operator may run the call again without asking its reconcile check first: its
    recorded class is repeat-safe (read, idempotent) and it runs with the arguments it was offered with. A
    reviewer's approved edit was judged on its own and may belong to another class than the call row records,
    so a call that runs with an edit is always reconciled first (never re-run blindly)."""
    if call.side_effect is None or not SideEffectClass(call.side_effect).repeat_safe:
        return False
    approval = path.ledger.approval_for_call(call.call_id)
    return approval is None or approval.approved_args_json is None


def _exact(args_json: str) -> bool:
    """The recorded arguments are the real ones (no secret was redacted out of them)."""
    return REDACTED not in args_json


def replayable(path: CallPath, call: CallRecord) -> bool:
    """The ledger holds the arguments the call was approved to run with exactly (no secret redacted out)."""
    return _exact(path.ledger.args_run_with(call))


def _started(path: CallPath, call: CallRecord, report: RecoveryReport, *, lease_ran_out: bool) -> None:
    tool = path.tools.get(call.tool)
    if tool is not None and repeat_safe(path, call) and _exact(path.ledger.args_run_with(call)):
        token = path.ledger.claim(
            call, worker=path.worker_id, ttl=path.lease_ttl, actor=_actor(path), lease_ran_out=lease_ran_out
        )
        if token is None:
            report.lost(_name(call), "another recoverer took it first")
            return
        report.claimed += 1
        crash_point("after_recover_claim")
        run_claimed(path, call, tool, token, report)
        report.retried += 1
        return
    token = path.ledger.claim(
        call,
        worker=path.worker_id,
        ttl=path.lease_ttl,
        actor=_actor(path),
        to=C.IN_DOUBT,
        lease_ran_out=lease_ran_out,
    )
    if token is None:
        report.lost(_name(call), "another recoverer took it first")
        return
    report.claimed += 1
    crash_point("after_recover_claim")
    moved = path.ledger.get_call(call.call_id)
    if moved is not None:
        _in_doubt(path, moved, report)


@dataclass(frozen=True, slots=True)
class Unknown:
    """The reconcile step cannot settle the call: nothing may run. `why` says why; `replayable` is True when a
    person who checked the other system may still have it run once (`guard runs retry-call --confirmed-absent`):
    no check, or a check that could not tell. Never when the check and the ledger disagree, or when the recorded
    arguments are redacted."""

    why: str
    replayable: bool


def ask_reconcile(path: CallPath, call: CallRecord) -> Found | NotFound | Unknown:
    """The reconcile step, shared by recovery and an operator's retry: ask the tool's reconcile check about a
    call whose outcome is not known, and say what may happen next. Found: the effect is there (its ids agree
    with the ledger); record it, run nothing. NotFound: it provably is not, and the call can be replayed exactly;
    run it once with the same key. Unknown: nothing runs."""
    tool = path.tools.get(call.tool)
    hooks = tool.hooks if tool is not None else None
    ran_with = path.ledger.args_run_with(call)  # a reviewer's edit is what ran: the check looks for that
    ctx = ReconcileContext(
        run_id=call.run_id,
        call_id=call.call_id,
        tool=call.tool,
        args=json.loads(ran_with),
        idempotency_key=call.offered_key,
        external_ids=call.external_id_map,
        attempts=call.attempts,
    )
    answer = reconcile(hooks.reconcile if hooks is not None else None, ctx)
    if isinstance(answer, Found):
        clash = disagreement(call.external_id_map, answer)
        return answer if clash is None else Unknown(f"its reconcile check and the ledger disagree ({clash})", False)
    exact = _exact(ran_with)
    if isinstance(answer, NotFound):
        return (
            answer
            if tool is not None and exact
            else Unknown(
                "its reconcile check confirmed it did not happen, but its recorded arguments are redacted: run it by "
                "hand"
                if tool is not None
                else "this Guard has no tool code for it",
                tool is None and exact,
            )
        )
    if not exact:
        return Unknown(
            "no reconcile check answered, and its recorded arguments are redacted: check the other "
            "system and run it by hand",
            False,
        )
    return Unknown(
        "no tool code here"
        if hooks is None
        else "its tool declares no reconcile check"
        if hooks.reconcile is None
        else "its reconcile check could not tell",
        True,
    )


def record_found(path: CallPath, call: CallRecord, found: Found, *, actor: str) -> None:
    """The reconcile check found the call's effect: `in_doubt | failed -> completed` with what it found."""
    decision = path.policies.classify(call.team, call.tool, call.args)
    path.ledger.complete(
        call.run_id,
        call.call_id,
        token=call.lease_token,
        result_json=to_json(redact(found.result, decision.secret_fields)),
        external_ids={**call.external_id_map, **found.external_ids},
        attempts=call.attempts,
        actor=actor,
        src=C(call.state),
        detail={"reconciled": "found"},
    )


def run_once(path: CallPath, call: CallRecord, tool: ToolSpec, report: RecoveryReport, *, actor: str) -> bool:
    """Take the call over (`-> started`, a new fencing token) and run it once with its recorded arguments and
    key; False when another worker changed it first (then nothing ran here)."""
    token = path.ledger.claim(call, worker=path.worker_id, ttl=path.lease_ttl, actor=actor, to=C.STARTED)
    if token is None:
        return False
    run_claimed(path, call, tool, token, report, actor=actor)
    return True


def _in_doubt(path: CallPath, call: CallRecord, report: RecoveryReport) -> None:
    answer = ask_reconcile(path, call)
    tool = path.tools.get(call.tool)
    if isinstance(answer, Found):
        record_found(path, call, answer, actor=_actor(path))
        report.reconciled += 1
        _settled(path, call, f"#{call.seq} {call.tool} was found by its reconcile check")
        return
    if isinstance(answer, NotFound) and tool is not None:
        if run_once(path, call, tool, report, actor=_actor(path)):
            report.reconciled += 1
            report.ran_once += 1
            _settled(path, call, f"#{call.seq} {call.tool} was confirmed absent by its reconcile check and ran once")
        else:
            report.lost(_name(call), "another recoverer took it first")
        return
    why = answer.why if isinstance(answer, Unknown) else "no tool code here"
    report.to_review += 1
    report.notes.append(f"{_name(call)}: {why}")
    path.ledger.close_run(
        call.run_id,
        RunClose(
            RunState.PENDING_REVIEW,
            status_label=call.tool.replace(".", "_") + "_in_doubt",
            error_summary=f"{call.tool} may or may not have happened ({why})",
            next_safe_action=_what_to_do(call),
            requires_review=True,
        ),
        actor=_actor(path),
        expect=_TO_REVIEW,
    )
    path.ledger.release(call.call_id, call.lease_token)  # the next pass (or an operator) may try it at once


def _what_to_do(call: CallRecord) -> str:
    """What a person does about a call the reconcile step could not settle."""
    return (
        f"check {call.tool} in the other system (idempotency key {call.offered_key or '-'}); then "
        f"`guard runs retry-call {call.run_id} {call.call_id} --app MODULE:GUARD --note ...` (add "
        "`--confirmed-absent` if you found it is not there) or `guard runs finish "
        f"{call.run_id} --note ...`"
    )


def _settled(path: CallPath, call: CallRecord, how: str) -> None:
    """A call recovery settled: its run, if it waits for review, moves on or says what is left."""
    done = path.ledger.get_call(call.call_id)
    if done is not None and done.state == C.COMPLETED:
        after_settled(path, call.run_id, actor=_actor(path), settled=how, expect=frozenset({RunState.PENDING_REVIEW}))


def run_claimed(
    path: CallPath, call: CallRecord, tool: ToolSpec, token: int, report: RecoveryReport, *, actor: str | None = None
) -> None:
    """Run a claimed call to its recorded end; its failure is settled by the policy as on the live path."""
    scope = RunScope(call.run_id, call.team, actor or _actor(path))
    args = json.loads(path.ledger.args_run_with(call))
    decision = path.policies.classify(call.team, call.tool, args)
    request = CallRequest(
        call_id=call.call_id,
        run_id=call.run_id,
        team=call.team,
        tool=call.tool,
        args_json=call.args_json,
        args_hash=call.args_hash,
        idempotency_key=call.offered_key,
        verdict="allow",
        side_effect=call.side_effect,
        rule=call.rule,
        reason="",
        policy_version=call.policy_version,
        actor=scope.actor,
        compensates_call_id=call.compensates_call_id,
        worker=path.worker_id,
        lease_ttl=path.lease_ttl,
    )
    offer = Offer("started", call.call_id, call.seq, record=call, lease_token=token)
    p = Prepared(
        CallInput(scope, tool, args, call.offered_key, call.call_id, call.compensates_call_id),
        decision,
        request,
        offer,
    )
    try:
        driver.drive_sync(path, p)
    except CallOutcomeError as exc:
        report.notes.append(f"{call.run_id} #{call.seq} {call.tool}: re-run ended {exc.state}")
