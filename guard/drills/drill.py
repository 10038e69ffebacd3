"""`run_drill`: one recovery drill of a team, over the ledger and the incident book, with three times.

1. **Pause.** The bad run is started in a run of its own (`drill:<id>`), calling the team's stand-in tools until
   something stops it. The drill passes this step only if a pause of the team (or of one of its tools) is in force
   afterwards, set since the drill began: the brakes the team relies on (`stop:` with `on_trip: pause`) fired.
   A bad run that ends without a pause fails the drill at `pause`.
2. **Blast radius found.** An incident is opened on the drill's run and its blast radius read from the ledger
   (records by system and state).
3. **Clean state.** The snapshot is taken, every record the run changed is judged wrong, the drill's pauses are
   lifted, a sample of one is repaired by its compensation and then the rest, the drill's run is finished by hand
   and the incident closed. Clean means no record the run changed is left standing, in doubt or failed to undo.

Each time is wall-clock seconds (`time.perf_counter`). The drill is kept in the ledger (`Ledger.record_drill`)
whether it passed or failed, with the step it failed at and why.

A drill pauses the team for real: run it on a staging or scratch ledger (`--db`), or where the team agreed to it.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.errors import DrillFailed, GuardError, GuardUsageError
from guard.incidents import IncidentBook, RecordFilter, Scope, TeamSystems
from guard.incidents.repair import repair
from guard.runtime.doors import ledger_of

if TYPE_CHECKING:
    from guard.runtime import Guard

__all__ = ["DrillFailed", "DrillResult", "StandIns", "load_stand_ins", "run_drill"]

StandIns = Callable[["Guard"], Callable[[], None]]


class _StepFailed(Exception):
    """A step of the drill did not complete (raised inside `run_drill`, kept, then raised as `DrillFailed`)."""


@dataclass(slots=True)
class DrillResult:
    """One drill: its times in seconds (None for a step not reached), what it touched, and how it ended."""

    drill_id: int
    team: str
    run_id: str
    state: str  # passed | failed
    pause_s: float | None = None
    radius_s: float | None = None
    clean_s: float | None = None
    records: int = 0
    incident_id: str | None = None
    by_system: dict[str, dict[str, int]] = field(default_factory=dict[str, dict[str, int]])
    failed_at: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "drill": self.drill_id,
            "team": self.team,
            "run_id": self.run_id,
            "state": self.state,
            "pause_s": self.pause_s,
            "radius_s": self.radius_s,
            "clean_s": self.clean_s,
            "records": self.records,
            "incident_id": self.incident_id,
            "by_system": self.by_system,
            "failed_at": self.failed_at,
            "reason": self.reason,
        }

    def summary(self) -> str:
        if self.state != "passed":
            return f"drill {self.drill_id} of team {self.team} failed at {self.failed_at}: {self.reason}"
        systems = len(self.by_system)
        return (
            f"drill {self.drill_id} of team {self.team}: paused in {self.pause_s:.3f} s, blast radius found in "
            f"{self.radius_s:.3f} s ({self.records} records in {systems} system{'s' if systems != 1 else ''}), "
            f"clean in {self.clean_s:.3f} s"
        )


def load_stand_ins(spec: str) -> StandIns:
    """Import `module:function` (the current directory first on the path, as `--app` does).

    Raises:
        GuardUsageError: not module:function, or it cannot be imported or called.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise GuardUsageError(f"stand-ins are module:function, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise GuardUsageError(f"cannot load the stand-ins {spec}: {exc}") from exc
    if not callable(target):
        raise GuardUsageError(f"the stand-ins {spec} are not a function of the drill's Guard")
    found: StandIns = target  # pyright: ignore[reportAssignmentType] (its shape is the team's promise)
    return found


def _bad_run(guard: Guard, team: str, run_id: str, bad_run: Callable[[], None], since: float) -> list[dict[str, Any]]:
    """Run the bad run until something stops it; the pauses of the team set since the drill began (its brakes)."""
    try:
        with guard.run(team, run_id=run_id):
            bad_run()
    except GuardError:
        pass  # the brakes stopped it: whether they paused anything is read from the ledger below
    pauses = [p for p in ledger_of(guard).active_pauses([team]) if p["at"] >= since]
    if not pauses:
        raise _StepFailed(
            f"the bad run of team {team} ended and nothing paused: the team's brakes (policy `stop:` with "
            "`on_trip: pause`) did not fire on it"
        )
    return pauses


def run_drill(
    guard: Guard,
    team: str,
    stand_ins: StandIns,
    *,
    by: str,
    snapshot_dir: str | Path,
    clock: Callable[[], float] = time.perf_counter,
) -> DrillResult:
    """Run one drill of `team` with `guard` (its policies and ledger) and keep it in the ledger.

    Raises:
        DrillFailed: a step did not complete (the drill is kept as failed, with the step and why).
        GuardUsageError: the team is paused already (a drill measures a pause of its own), or the stand-ins are
            not usable.
    """
    if ledger_of(guard).active_pauses([team]):
        raise GuardUsageError(f"team {team} is paused already: lift its pauses before a drill, which pauses it itself")
    if team not in guard.policies.policies:
        raise GuardUsageError(f"team {team} has no valid policy: a drill runs under the team's policy")
    book = IncidentBook(ledger_of(guard), systems=TeamSystems(guard.policies.policies))
    bad_run = stand_ins(guard)
    result = DrillResult(0, team, f"{team}:drill-{uuid.uuid4().hex[:12]}", "failed")
    started_at = time.time() - 0.001  # a pause row's clock (the database's on PostgreSQL) may read a bit behind
    t0 = clock()
    try:
        pauses = _bad_run(guard, team, result.run_id, bad_run, started_at)
        result.pause_s = clock() - t0
        t1 = clock()
        incident = book.open(Scope(run_ids=(result.run_id,)), title=f"drill of team {team}", opened_by=by)
        result.incident_id = incident.incident_id
        radius = book.radius(incident.incident_id)
        result.records = len(radius.changed())
        result.by_system = radius.by_system_state()
        result.radius_s = clock() - t1
        t2 = clock()
        _clean(guard, book, result, pauses, by, Path(snapshot_dir))
        result.clean_s = clock() - t2
        result.state = "passed"
    except _StepFailed as exc:
        result.failed_at = "pause" if result.pause_s is None else "radius" if result.radius_s is None else "clean"
        result.reason = str(exc)
    result.drill_id = ledger_of(guard).record_drill(
        team,
        by=by,
        state=result.state,
        started_at=started_at,
        times=(result.pause_s, result.radius_s, result.clean_s),
        records=result.records,
        run_id=result.run_id,
        incident_id=result.incident_id,
        detail={"by_system": result.by_system, "failed_at": result.failed_at, "reason": result.reason},
    )
    if result.state != "passed":
        raise DrillFailed(result.summary(), drill=result.drill_id, step=result.failed_at)
    return result


def _clean(
    guard: Guard, book: IncidentBook, result: DrillResult, pauses: list[dict[str, Any]], by: str, folder: Path
) -> None:
    from guard.runtime.operator import finish

    assert result.incident_id is not None
    incident_id = result.incident_id
    folder.mkdir(parents=True, exist_ok=True)
    book.snapshot(incident_id, folder / f"drill-{incident_id}.jsonl", by=by)
    if result.records:
        book.tag(incident_id, RecordFilter(run_id=result.run_id), "wrong", by=by, note="drill: every change is wrong")
    for pause in pauses:
        ledger_of(guard).unpause(
            pause["scope"], pause["target"], by=by, reason="drill: the pause held; repairing", team=pause["team"]
        )
    if result.records:
        report = repair(guard, book, incident_id, operator=by, sample=1)
        if report.left:
            report = repair(guard, book, incident_id, operator=by, rest=True)
        if report.left or report.failed or report.waiting:
            raise _StepFailed(
                f"{report.left} wrong record(s) left after repair ({len(report.failed)} failed, "
                f"{len(report.waiting)} waiting, {len(report.skipped)} without a compensation)"
            )
    standing = [r for r in book.radius(incident_id).changed() if r.state != "rolled_back"]
    if standing:
        raise _StepFailed(
            f"{len(standing)} record(s) still {', '.join(sorted({r.state for r in standing}))} after repair: "
            "declare a compensation on every stand-in tool that changes something"
        )
    run = guard.ledger.get_run(result.run_id)
    if run is not None and run.state in ("pending_review", "halted"):
        finish(ledger_of(guard), result.run_id, operator=by, note=f"drill: repaired through incident {incident_id}")
    book.close(incident_id, "drill: every record the bad run changed is undone", by=by)
