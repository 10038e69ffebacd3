"""Kill scenarios for an incident's repair: a lab runs two business events to completion (two charges), an
incident on them has its charges judged wrong and its snapshot taken, then `tests.chaos.agent repair` is killed in
its repair loop and a fresh worker runs the same repair again (recovering first).

Points: `before_repair` (the record is `rolling_back`, its refund not yet offered), `after_repair` (the refund's
call completed, the record not yet `rolled_back`), and the call path's `after_return` inside a refund (the refund
ran, its `completed` not yet committed). Besides the campaign's invariants, a repair scenario counts the refunds
that reached the witness for a charge it had already refunded (`undo_repeat`): a resumed repair finds its recorded
result by its key, so it repeats none at the points outside the call; inside it the refund is repeat-safe
(`idempotent`) and recovery retries it, so there a repeat is allowed (the charge is still undone once) and not
counted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from guard.incidents import IncidentBook, RecordFilter, Scope
from guard.ledger import CallState
from tests.chaos.harness import TEAM, Lab
from tests.chaos.invariants import Check

__all__ = ["EVENTS", "REPAIR_POINTS", "repair_kill"]

EVENTS = ("evt-1", "evt-2")
REPAIR_POINTS = {"before_repair": False, "after_repair": False, "after_return": True}  # point -> repeat allowed


def _incident(lab: Lab, root: Path) -> str:
    """Both events run to completion; an incident on them, its charges judged wrong, its snapshot taken."""
    for event in EVENTS:
        done = lab.run(event=event)
        if done.code != 0:
            raise RuntimeError(f"event {event} did not complete: {done.output}")
    ledger = lab.ledger()
    try:
        book = IncidentBook(ledger)
        inc = book.open(Scope(team=TEAM, source_event_ids=EVENTS), title="charged twice", opened_by="ops-bot")
        book.tag(inc.incident_id, RecordFilter(tool="witness.charge"), "wrong", by="ops-bot")
        book.snapshot(inc.incident_id, root / "snapshot.jsonl", by="ops-bot")
        return inc.incident_id
    finally:
        ledger.close()


def repair_kill(point: str, nth: int, url: str | None = None) -> Callable[[Path], tuple[int, Check]]:
    """Kill the repair at `point@nth`, resume it with a fresh worker; (kills, check with its repeated refunds). The
    lab's ledger is at `url` when given (else the campaign's backend)."""

    def run(root: Path) -> tuple[int, Check]:
        lab = Lab(root, url=url)
        inc = _incident(lab, root)
        repair = ("--incident", inc, "--sample", str(len(EVENTS)))
        first = lab.run("repair", crash=f"{point}@{nth}", extra=repair)
        if not first.killed:
            raise RuntimeError(f"repair {point}@{nth} was not killed: {first.output} {first.stderr[-800:]}")
        resume = lab.run("repair", worker="w2", extra=("--recover", *repair))
        check = lab.check()
        repeated = sum(1 for a in lab.witness.attempts() if a.outcome == "undo_repeat")
        if resume.code != 0:
            check.add("repair", f"the resumed repair ended {resume.code}: {resume.output}")
        ledger = lab.ledger()
        try:
            charges = [c for e in EVENTS for c in ledger.calls_of(f"{TEAM}:{e}") if c.tool == "witness.charge"]
        finally:
            ledger.close()
        if [c.state for c in charges] != [CallState.ROLLED_BACK] * len(EVENTS):
            check.add("repair", f"charges after the resumed repair: {[c.state for c in charges]}")
        undone = [e for e in lab.witness.effects() if e.kind == "charge" and e.undone_at is not None]
        if len(undone) != len(EVENTS):
            check.add("repair", f"{len(undone)} of {len(EVENTS)} charges undone in the witness")
        if repeated and not REPAIR_POINTS[point]:
            check.repeated_repairs = repeated
            check.add("repeated_repair", f"{repeated} refund(s) reached the witness again after the kill")
        return 1, check

    return run
