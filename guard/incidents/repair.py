"""Repair with a clean list: the records judged wrong, undone by their compensation (or a repair tool the team
declares) as guarded calls, a sample first, then the rest.

Each repair is a guarded call of the tool's compensation in the incident's repair run of the record's team
(`incident:<id>:repair:<team>`), classified, recorded, gated and braked like any call, keyed `repair:<call id>`,
so it runs once whatever happens: a repair run again (by the same or another operator, or after a crash)
finds the recorded result and runs nothing. The record's call moves `completed -> rolling_back -> rolled_back`
(or `rollback_failed`), as a saga's compensation moves it. The repair gets a `RollbackContext` whose `failure`
names the incident and `kind` is the compensation's.

Order: by run and sequence, so the sample is the same records whoever asks. `sample=N` repairs the first N not yet
repaired; the rest is refused until a sample was repaired (`rest=True`), and refused while any record of the
sample failed or waits. A repair stopped midway (killed) resumes where it was: a record left `rolling_back`
is offered again under its key, which returns the recorded result when the repair had completed.

Crash points (kill tests, `GUARD_CRASH_AT`): `before_repair` (the record is `rolling_back`, its repair not yet
offered) and `after_repair` (the repair call completed, the record not yet `rolled_back`).

Refused before anything runs: no snapshot (the evidence is taken before anyone repairs), a closed incident, a
paused team (a repair is a run of the team: lift the pause, or narrow it to the tool that did the damage).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guard.crash import crash_point
from guard.errors import ApprovalPending, ApprovalTimeout, GuardError, GuardUsageError, IllegalTransition
from guard.incidents.book import IncidentBook
from guard.incidents.snapshot import Inspector
from guard.ledger import CallRecord, CallState
from guard.redaction import redact
from guard.runtime.context import RunScope
from guard.runtime.doors import ledger_of
from guard.runtime.hooks import ReconcileContext
from guard.runtime.saga import rollback_context

if TYPE_CHECKING:
    from guard.runtime import Guard
    from guard.runtime.hooks import ToolSpec

__all__ = ["RepairReport", "counts_match", "inspector_for", "repair", "repair_run_id"]

C = CallState
_REPAIRABLE = frozenset({C.COMPLETED, C.IN_DOUBT, C.FAILED, C.ROLLBACK_FAILED, C.ROLLING_BACK})


def repair_run_id(incident_id: str, team: str) -> str:
    return f"incident:{incident_id}:repair:{team}"


@dataclass(slots=True)
class RepairReport:
    """What one repair pass did, and the counts by system and state before and after it."""

    repaired: list[str] = field(default_factory=list[str])  # call ids now rolled back by this pass
    failed: list[str] = field(default_factory=list[str])  # their repair failed: rollback_failed
    waiting: list[str] = field(default_factory=list[str])  # their repair waits for an approval
    skipped: list[str] = field(default_factory=list[str])  # no repair declared, or the call moved meanwhile
    left: int = 0  # wrong records not yet repaired after this pass
    before: dict[str, dict[str, int]] = field(default_factory=dict[str, dict[str, int]])
    after: dict[str, dict[str, int]] = field(default_factory=dict[str, dict[str, int]])

    def to_json(self) -> dict[str, Any]:
        return {
            "repaired": len(self.repaired),
            "failed": self.failed,
            "waiting": self.waiting,
            "skipped": self.skipped,
            "left": self.left,
            "before": self.before,
            "after": self.after,
        }


def repair(
    guard: Guard,
    book: IncidentBook,
    incident_id: str,
    *,
    operator: str,
    sample: int | None = None,
    rest: bool = False,
    repair_tool: str | None = None,
) -> RepairReport:
    """Repair the incident's records judged wrong: the first `sample` of those left, or (`rest`) all of them.

    Raises:
        GuardUsageError: neither or both of `sample` and `rest`; no snapshot; an unknown `repair_tool`; the rest
            asked before a sample was repaired, or while one of the sample failed or waits.
        IllegalTransition: the incident is closed.
        TeamPaused-like refusal (GuardUsageError): a pause holds the team's new runs.
    """
    if (sample is None) == (not rest):
        raise GuardUsageError("repair a sample first (`--sample N`), then the rest (`--rest`)")
    if sample is not None and sample < 1:
        raise GuardUsageError("the sample is at least one record")
    incident = book.get(incident_id)
    if incident.state != "open":
        raise IllegalTransition(
            f"incident {incident_id} is closed",
            entity="incident",
            id=incident_id,
            from_state=incident.state,
            to_state="repair",
        )
    if incident.snapshot_digest is None:
        raise GuardUsageError(
            f"take the snapshot of incident {incident_id} before anyone repairs "
            f"(`guard incident snapshot {incident_id} FILE`): it is the evidence of what was there"
        )
    tool: ToolSpec | None = None
    if repair_tool is not None:
        named = guard.tool_named(repair_tool)
        tool = named.spec if named is not None else None
        if tool is None:
            raise GuardUsageError(f"this Guard has no tool {repair_tool}: pass the agent's app with --app")
    radius = book.radius(incident_id)
    report = RepairReport(before=radius.by_system_state())
    wrong = [r for r in radius.records if r.verdict == "wrong" and r.changed]
    done = [r for r in wrong if r.state == C.ROLLED_BACK]
    todo = [r for r in wrong if r.state in _REPAIRABLE]
    if rest:
        if not done:
            raise GuardUsageError("repair a sample first (`--sample N`) and check it, then the rest")
        stuck = [r.call_id for r in wrong if r.state == C.ROLLBACK_FAILED]
        if stuck:
            raise GuardUsageError(
                f"{len(stuck)} repair(s) failed ({', '.join(stuck[:3])}): look at them before the rest"
            )
    batch = todo if rest else todo[:sample]
    guard.recover_on_start()  # a repair killed mid-call left it `started`: recovery settles it first
    scopes: dict[str, RunScope] = {}
    for record in batch:
        call = guard.ledger.get_call(record.call_id)
        if call is None or call.state not in _REPAIRABLE:
            report.skipped.append(record.call_id)
            continue
        comp = tool or _compensation_of(guard, call)
        if comp is None:
            report.skipped.append(record.call_id)
            continue
        scope = scopes.get(call.team) or _repair_scope(guard, incident_id, call.team, operator)
        scopes[call.team] = scope
        outcome = _repair_one(guard, scope, call, comp, incident_id)
        getattr(report, outcome).append(record.call_id)
        if outcome == "waiting":
            break
    what = f"sample of {len(batch)}" if sample is not None else f"rest ({len(batch)})"
    after = book.radius(incident_id)
    report.after = after.by_system_state()
    report.left = sum(1 for r in after.records if r.verdict == "wrong" and r.state in _REPAIRABLE)
    book.book.add_note(
        incident_id,
        author=operator,
        kind="action",
        text=f"repair {what}: {len(report.repaired)} repaired, {len(report.failed)} failed, "
        f"{len(report.waiting)} waiting, {len(report.skipped)} skipped; {report.left} left",
    )
    return report


def _compensation_of(guard: Guard, call: CallRecord) -> ToolSpec | None:
    hooks = guard.hooks_of(call.tool)
    return None if hooks is None else hooks.compensation


def _repair_scope(guard: Guard, incident_id: str, team: str, operator: str) -> RunScope:
    held = ledger_of(guard).pause_at_source(team)
    if held is not None:
        raise GuardUsageError(
            f"team {team} is paused by {held['paused_by']} ({held['reason']}): a repair is a run "
            "of the team, and the pause holds it. Pause the tool that did the damage instead "
            f"(`guard pause --team {team} --tool ...`), then lift the team's pause"
        )
    run_id = repair_run_id(incident_id, team)
    ledger_of(guard).open_run(run_id, team, actor=operator, subject=f"repair of incident {incident_id}")
    return RunScope(run_id, team, operator)


def _repair_one(guard: Guard, scope: RunScope, call: CallRecord, comp: ToolSpec, incident_id: str) -> str:
    """Repair one record; the name of the report's list it lands in."""
    actor = scope.actor
    held = ledger_of(guard).pause_holding(scope.team, comp.name, scope.run_id)
    if held is not None:  # refused before the record moves: a denied repair would read as a failed one
        raise GuardUsageError(f"the repair {comp.name} is held: {held}")
    if call.state != C.ROLLING_BACK and not ledger_of(guard).begin_rollback(
        call, actor=actor, reason=f"incident {incident_id}: judged wrong"
    ):
        return "skipped"
    crash_point("before_repair")
    hooks = guard.hooks_of(call.tool)
    ctx = rollback_context(
        call,
        ledger=ledger_of(guard),
        policies=guard.policies,
        failure=f"incident {incident_id}: judged wrong",
        kind=hooks.compensation_kind if hooks is not None else "correct",
        state=C.ROLLING_BACK,
    )
    try:
        guard.invoke_in(scope, comp, {"context": ctx.to_json()}, key=f"repair:{call.call_id}", compensates=call.call_id)
    except (ApprovalPending, ApprovalTimeout):
        return "waiting"
    except GuardError as exc:  # failed, denied or rejected: recorded on the repair's own call
        ledger_of(guard).end_rollback(
            call, ok=False, actor=actor, detail={"repair": comp.name, "incident": incident_id, "error": str(exc)}
        )
        return "failed"
    crash_point("after_repair")
    ledger_of(guard).end_rollback(call, ok=True, actor=actor, detail={"repair": comp.name, "incident": incident_id})
    return "repaired"


def counts_match(before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]]) -> bool:
    """Every system holds as many records after as before (a repair moves states, never records)."""
    return all(sum(before[s].values()) == sum(after.get(s, {}).values()) for s in before)


def inspector_for(guard: Guard) -> Inspector:
    """The snapshot's inspect step over `guard`'s tools: each record read back through its tool's `.inspect`
    hook (None for a tool that declares none, or that this Guard does not hold), with the secret fields of the
    record's team `[REDACTED]` in it, as in what the ledger keeps. A team whose policy cannot be read fails the
    hook (PolicyError: the snapshot writes it as `current_error`), never an unredacted record."""

    def look(record: Mapping[str, Any]) -> Any:
        hooks = guard.hooks_of(str(record["tool"]))
        if hooks is None or hooks.inspect is None:
            return None
        secrets = guard.policies.get(str(record["team"])).secret_fields
        return redact(
            hooks.inspect(
                ReconcileContext(
                    run_id=record["run_id"],
                    call_id=record["call_id"],
                    tool=record["tool"],
                    args=record["args"],
                    idempotency_key=record["idempotency_key"],
                    external_ids=record["external_ids"],
                    attempts=record["attempts"],
                )
            ),
            secrets,
        )

    return look
