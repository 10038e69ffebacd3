"""The blast radius of an incident: every call in its scope that changed something (or tried to), with its external
ids, grouped by system and state, counted, and the people's verdicts on them.

A record is one call. Its system is the part of the tool's name before the first dot (`crm.update_status` ->
`crm`), unless the team's policy names it (`systems:`) or the caller names systems by tool glob (`{"billing.*":
"stripe"}`). Its state is the call's state
in the ledger, in words: completed, rolled back, compensation failed, in doubt, failed, denied (and the rarer
ones as they are). A record *changed data* when its call ran: completed, rolled back, compensation failed, in
doubt, failed, or still under way; denied, rejected or expired calls never ran and are counted apart.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Protocol

from guard.ledger.incident_scope import Scope, ScopeCall
from guard.ledger.incidents import VERDICTS, LedgerIncidents

__all__ = ["RAN", "STATE_WORDS", "BlastRadius", "Record", "Systems", "TeamSystems", "blast_radius", "system_of"]

STATE_WORDS = {
    "completed": "completed",
    "rolled_back": "rolled back",
    "rollback_failed": "compensation failed",
    "in_doubt": "in doubt",
    "failed": "failed",
    "denied": "denied",
    "rolling_back": "rolling back",
    "started": "under way",
    "awaiting_approval": "awaiting approval",
    "approved": "approved",
    "rejected": "rejected",
    "expired": "expired",
    "offered": "offered",
}
RAN = frozenset({"completed", "rolled_back", "rollback_failed", "rolling_back", "in_doubt", "failed", "started"})
CSV_COLUMNS = ("call_id", "run_id", "seq", "system", "tool", "state", "external_ids", "verdict", "judged_by", "note")


class SystemNames(Protocol):
    """What names a tool's system: a team's `Policy` (its `systems:` section)."""

    def system_of(self, tool: str) -> str | None: ...


class TeamSystems:
    """Every team's policy naming the systems of its own tools (`systems:`): a record is looked up under its team."""

    def __init__(self, policies: Mapping[str, SystemNames]) -> None:
        self._policies = dict(policies)

    def named(self, tool: str, team: str | None) -> str | None:
        policy = None if team is None else self._policies.get(team)
        return None if policy is None else policy.system_of(tool)


# What names systems: each team's policy, one policy, a tool-glob map, or nothing (a tool's prefix).
Systems = TeamSystems | SystemNames | Mapping[str, str] | None


def system_of(tool: str, systems: Systems = None, team: str | None = None) -> str:
    """The system a tool writes to: the system its team's policy puts it in (`Policy.system_of`, policy
    `systems:`), or the first glob of a `systems` mapping it matches; else its name's prefix."""
    if isinstance(systems, TeamSystems):
        named = systems.named(tool, team)
    elif systems is not None and not isinstance(systems, Mapping):
        named = systems.system_of(tool)
    else:
        named = next((name for glob, name in (systems or {}).items() if fnmatchcase(tool, glob)), None)
    if named is not None:
        return named
    return tool.split(".", 1)[0] if "." in tool else tool


@dataclass(frozen=True, slots=True)
class Record:
    """One touched record: a call in scope, its system, state, external ids and current verdict."""

    call_id: str
    run_id: str
    seq: int
    tool: str
    system: str
    state: str
    external_ids: dict[str, str]
    verdict: str | None = None
    judged_by: str | None = None
    note: str | None = None

    @property
    def changed(self) -> bool:
        return self.state in RAN

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "run_id": self.run_id,
            "seq": self.seq,
            "tool": self.tool,
            "system": self.system,
            "state": self.state,
            "state_words": STATE_WORDS.get(self.state, self.state),
            "external_ids": self.external_ids,
            "verdict": self.verdict,
            "judged_by": self.judged_by,
            "note": self.note,
        }


@dataclass(slots=True)
class BlastRadius:
    """The records of a scope, and their counts by system and state and by verdict."""

    records: list[Record] = field(default_factory=list[Record])

    def changed(self) -> list[Record]:
        return [r for r in self.records if r.changed]

    def by_system_state(self) -> dict[str, dict[str, int]]:
        """system -> state -> count, every record (those that never ran too)."""
        out: dict[str, Counter[str]] = {}
        for r in self.records:
            out.setdefault(r.system, Counter())[r.state] += 1
        return {s: dict(sorted(c.items())) for s, c in sorted(out.items())}

    def verdict_totals(self) -> dict[str, int]:
        """Over the records that changed data: safe, wrong, unclear, and `not_judged`."""
        counts = Counter(r.verdict or "not_judged" for r in self.changed())
        return {v: counts.get(v, 0) for v in (*VERDICTS, "not_judged")}

    def summary(self) -> str:
        """One line: `214 records changed in 3 systems: 146 wrong, 38 safe, 30 unclear, 0 not yet judged`."""
        changed = self.changed()
        systems = len({r.system for r in changed})
        t = self.verdict_totals()
        line = (
            f"{len(changed)} record{'s' if len(changed) != 1 else ''} changed in {systems} "
            f"system{'s' if systems != 1 else ''}: {t['wrong']} wrong, {t['safe']} safe, {t['unclear']} unclear, "
            f"{t['not_judged']} not yet judged"
        )
        never = len(self.records) - len(changed)
        return line + (f" ({never} more never ran: denied, rejected or expired)" if never else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "records_changed": len(self.changed()),
            "records": len(self.records),
            "by_system": self.by_system_state(),
            "verdicts": self.verdict_totals(),
            "calls": [r.to_dict() for r in self.records],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in self.records:
            ids = " ".join(f"{k}={v}" for k, v in sorted(r.external_ids.items()))
            writer.writerow(
                [
                    _cell(v)
                    for v in (
                        r.call_id,
                        r.run_id,
                        r.seq,
                        r.system,
                        r.tool,
                        r.state,
                        ids,
                        r.verdict or "",
                        r.judged_by or "",
                        r.note or "",
                    )
                ]
            )
        return out.getvalue()


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (values come from agents and tools)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def records_of(
    calls: Iterable[ScopeCall], verdicts: Mapping[str, Mapping[str, Any]], systems: Systems = None
) -> list[Record]:
    out: list[Record] = []
    for c in calls:
        v = verdicts.get(c.call_id)
        out.append(
            Record(
                c.call_id,
                c.run_id,
                c.seq,
                c.tool,
                system_of(c.tool, systems, c.team),
                c.state,
                c.ids,
                None if v is None else v["verdict"],
                None if v is None else v["judged_by"],
                None if v is None else v["note"],
            )
        )
    return out


def blast_radius(
    book: LedgerIncidents, scope: Scope, *, incident_id: str | None = None, systems: Systems = None
) -> BlastRadius:
    """The blast radius of `scope` as the ledger tells it now (with `incident_id`'s verdicts, when given)."""
    verdicts = book.verdicts(incident_id) if incident_id is not None else {}
    return BlastRadius(records_of(book.calls_in_scope(scope), verdicts, systems))
