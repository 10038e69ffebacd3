"""Policy replay: decide every recorded call again under other policies, from the ledger's stored facts, and say
what would change. Nothing runs: no tool, no compensation, no write to the ledger.

For each call, in the order they were offered: the new policy classifies the stored arguments (secret fields are
stored redacted, so a condition on a secret sees `[REDACTED]`), and the new stop rules are counted over the
replayed history the way the ledger counts them (per run: repeats, max_calls, records per run; per team: rate
windows, records per window, duplicates; blank fields per call; calls a rule or the policy would deny are not
counted). Each difference from what was recorded is a `Change`:

- `verdict`: allow / approve / deny changed (deny < approve < allow in looseness);
- `class`: the side-effect class changed (both known; a stricter class tightens);
- `stop`: a stop rule would have tripped where none did, or the reverse;
- `shadow`: a rule in `mode: shadow` would have tripped (it decides nothing: neither tighter nor looser).

Calls a pause or a closed run denied are left out: no policy decided them and none would now.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from guard.canonical import to_json
from guard.ledger import RecordedCall
from guard.policy import Decision, PolicySet, SideEffectClass, Verdict

__all__ = ["Change", "ReplayReport", "Replayed", "replay"]

Direction = Literal["tightened", "loosened", "shadow"]
_LOOSENESS = {"deny": 0, "approve": 1, "allow": 2}


@dataclass(frozen=True, slots=True)
class Change:
    """One way the replayed decision differs: what (`kind`), which way, and before -> after in words."""

    kind: Literal["verdict", "class", "stop", "shadow"]
    direction: Direction
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class Replayed:
    """A recorded call whose decision would change."""

    call_id: str
    run_id: str
    seq: int
    team: str
    tool: str
    changes: tuple[Change, ...]


@dataclass(slots=True)
class ReplayReport:
    """What a replay found: how many calls it decided again, which would change, and how long it took."""

    calls: int = 0
    changed: list[Replayed] = field(default_factory=lambda: [])
    seconds: float = 0.0

    def count(self, direction: Direction) -> int:
        return sum(1 for r in self.changed for c in r.changes if c.direction == direction)

    @property
    def loosened(self) -> bool:
        """Anything would be allowed that was not: the exit status of `guard policy replay` in CI."""
        return self.count("loosened") > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "seconds": round(self.seconds, 3),
            "tightened": self.count("tightened"),
            "loosened": self.count("loosened"),
            "shadow": self.count("shadow"),
            "changes": [
                {
                    "call_id": r.call_id,
                    "run_id": r.run_id,
                    "seq": r.seq,
                    "team": r.team,
                    "tool": r.tool,
                    "changes": [
                        {"kind": c.kind, "direction": c.direction, "before": c.before, "after": c.after}
                        for c in r.changes
                    ],
                }
                for r in self.changed
            ],
        }


@dataclass(slots=True)
class _Counts:
    """What the stop rules of one team have counted so far in the replayed history."""

    runs: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: {})  # run -> (tool, args hash) counted
    rates: dict[tuple[str, float], tuple[int, int]] = field(default_factory=lambda: {})  # -> (window, calls)
    records: dict[tuple[str, str], set[str]] = field(default_factory=lambda: {})  # (rule, scope) -> values
    duplicates: dict[tuple[str, str], deque[float]] = field(default_factory=lambda: {})  # (rule, mark) -> times


def _old_verdict(r: RecordedCall) -> str | None:
    if r.brake is not None:
        return None  # a brake answered before the policy's verdict was recorded
    if r.state == "denied":
        return "deny"
    return "approve" if r.gated else "allow"


def _stop(decision: Decision, r: RecordedCall, args: dict[str, Any], counts: _Counts) -> tuple[str | None, list[str]]:
    """The stop rule that would trip on this call (its name), and the shadow rules that would."""
    call, stop = r, decision.stop
    mine = counts.runs.setdefault(call.run_id, [])
    if stop.repeats is not None:
        last = mine[-stop.repeats :]
        if len(last) == stop.repeats and all(t == call.tool and h == call.args_hash for t, h in last):
            return "repeats", []
    for pattern, limit in stop.max_calls:
        if sum(1 for t, _ in mine if fnmatchcase(t, pattern)) >= limit:
            return f"max_calls {pattern}", []
    for pattern, limit, per in stop.rate:
        window, made = counts.rates.get((pattern, per), (-1, 0))
        if window == int(call.offered_at // per) and made >= limit:
            return f"rate {pattern}", []
    shadows: list[str] = []
    for rule in stop.fields:
        tripped = False
        if rule.kind == "blanks":
            tripped = bool(rule.blanks_in(args))
        else:
            values = rule.values_in(args)
            if values is None:
                continue
            if rule.kind == "records":
                scope = call.run_id if rule.window is None else f"w{int(call.offered_at // rule.window)}"
                seen = counts.records.get((rule.name, scope), set())
                tripped = to_json(list(values)) not in seen and len(seen) >= rule.limit
            else:
                times = counts.duplicates.get((rule.name, to_json([call.tool, *values])), deque())
                tripped = sum(1 for at in times if at > call.offered_at - (rule.window or 0.0)) >= rule.limit
        if tripped and rule.mode == "shadow":
            shadows.append(rule.name)
        elif tripped:
            return rule.name, shadows
    return None, shadows


def _count(decision: Decision, r: RecordedCall, args: dict[str, Any], counts: _Counts) -> None:
    call, stop = r, decision.stop
    counts.runs.setdefault(call.run_id, []).append((call.tool, call.args_hash))
    for pattern, _limit, per in stop.rate:
        window = int(call.offered_at // per)
        old, made = counts.rates.get((pattern, per), (window, 0))
        counts.rates[(pattern, per)] = (window, made + 1 if old == window else 1)
    for rule in stop.fields:
        values = rule.values_in(args) if rule.kind != "blanks" else None
        if values is None:
            continue
        if rule.kind == "records":
            scope = call.run_id if rule.window is None else f"w{int(call.offered_at // rule.window)}"
            counts.records.setdefault((rule.name, scope), set()).add(to_json(list(values)))
        else:
            counts.duplicates.setdefault((rule.name, to_json([call.tool, *values])), deque()).append(call.offered_at)


def _rank(side_effect: str | None) -> int | None:
    return None if side_effect is None else SideEffectClass(side_effect).rank


def _changes(r: RecordedCall, new: Decision, tripped: str | None, shadows: list[str]) -> list[Change]:
    out: list[Change] = []
    old, verdict = _old_verdict(r), new.verdict.value
    if old is not None and old != verdict:
        way: Direction = "loosened" if _LOOSENESS[verdict] > _LOOSENESS[old] else "tightened"
        out.append(Change("verdict", way, old, verdict))
    before, after = _rank(r.side_effect), _rank(new.side_effect.value if new.side_effect else None)
    if before is not None and after is not None and before != after:
        out.append(
            Change("class", "tightened" if after > before else "loosened", str(r.side_effect), str(new.side_effect))
        )
    was_stopped = r.brake == "stop"
    if tripped is not None and not was_stopped:
        out.append(Change("stop", "tightened", "no stop rule tripped", f"stop rule {tripped} would trip"))
    elif was_stopped and tripped is None and new.verdict is not Verdict.DENY:
        out.append(Change("stop", "loosened", "a stop rule denied it", f"no stop rule trips: {verdict}"))
    out.extend(Change("shadow", "shadow", "-", f"shadow rule {name} would trip") for name in shadows)
    if new.shadow is not None:
        out.append(Change("shadow", "shadow", f"{verdict}", f"shadow rules would decide {new.shadow}"))
    return out


def replay(records: Iterable[RecordedCall], policies: PolicySet) -> ReplayReport:
    """Decide `records` again under `policies` (teams it has no policy for are left out). Pure: reads nothing and
    writes nothing but the report."""
    started = time.perf_counter()
    report = ReplayReport()
    counts: dict[str, _Counts] = {}
    for r in records:
        call = r
        if r.brake in ("pause", "run") or call.team not in policies.policies:
            continue
        report.calls += 1
        args: dict[str, Any] = json.loads(call.args_json) if call.args_json.startswith("{") else {}
        new = policies.classify(call.team, call.tool, args)
        team = counts.setdefault(call.team, _Counts())
        tripped: str | None = None
        shadows: list[str] = []
        if (
            call.compensates_call_id is None
            and new.verdict is not Verdict.DENY
            and (new.stop.repeats is not None or new.stop.max_calls or new.stop.rate or new.stop.fields)
        ):
            tripped, shadows = _stop(new, r, args, team)
            if tripped is None:
                _count(new, r, args, team)
        elif new.verdict is not Verdict.DENY:
            team.runs.setdefault(call.run_id, []).append((call.tool, call.args_hash))
        changes = _changes(r, new, tripped, shadows)
        if changes:
            report.changed.append(Replayed(call.call_id, call.run_id, call.seq, call.team, call.tool, tuple(changes)))
    report.seconds = time.perf_counter() - started
    return report
