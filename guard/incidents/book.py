"""`IncidentBook`: what an operator and a reviewer do with an incident, over the ledger alone (no framework, no
server): open it on a scope, read its blast radius, judge its records one by one or by filter, keep its note,
take and check its snapshot, close it. Repairs need the agent's tools: see `guard.incidents.repair`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from guard.errors import GuardUsageError
from guard.incidents.radius import BlastRadius, Record, Systems, blast_radius
from guard.incidents.snapshot import Inspector, SnapshotCheck, SnapshotTaken, take_snapshot, verify_snapshot
from guard.ledger import CallState, Ledger
from guard.ledger.incident_scope import Scope
from guard.ledger.incidents import VERDICTS, IncidentNoteRecord, IncidentRecord, LedgerIncidents, Verdict
from guard.policy import Policy

__all__ = ["IncidentBook", "RecordFilter", "check_owner"]


_CALL_STATES: tuple[str, ...] = tuple(s.value for s in CallState)
_JUDGED: tuple[str, ...] = (*VERDICTS, "none")


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Which records of an incident: by call ids, system, state, tool glob, run, an external id's value, or the
    current verdict (`none` for not judged yet). Every given field must match."""

    call_ids: tuple[str, ...] = ()
    system: str | None = None
    state: str | None = None
    tool: str | None = None
    run_id: str | None = None
    external_id: str | None = None
    verdict: str | None = None
    changed_only: bool = True  # only records whose call ran (a denied call changed nothing to judge)

    def __post_init__(self) -> None:
        """A state or verdict outside its fixed set is refused, naming the allowed ones: it would match nothing and
        read as "no such records"."""
        if self.state is not None and self.state not in _CALL_STATES:
            raise GuardUsageError(f"no record state {self.state!r}: one of {', '.join(_CALL_STATES)}")
        if self.verdict is not None and self.verdict not in _JUDGED:
            raise GuardUsageError(f"no verdict {self.verdict!r}: one of {', '.join(_JUDGED)} (none: not yet judged)")

    def empty(self) -> bool:
        return not (
            self.call_ids or self.system or self.state or self.tool or self.run_id or self.external_id or self.verdict
        )

    def matches(self, r: Record) -> bool:
        return (
            (not self.changed_only or r.changed or bool(self.call_ids))
            and (not self.call_ids or r.call_id in self.call_ids)
            and (self.system is None or r.system == self.system)
            and (self.state is None or r.state == self.state)
            and (self.tool is None or fnmatchcase(r.tool, self.tool))
            and (self.run_id is None or r.run_id == self.run_id)
            and (self.external_id is None or self.external_id in r.external_ids.values())
            and (self.verdict is None or (r.verdict or "none") == self.verdict)
        )


def check_owner(owner: str, teams: Sequence[str], policies: Mapping[str, Policy]) -> str:
    """`owner` when the policies list them under `reviewers:` in every one of `teams` (names compared as people).

    Raises:
        GuardUsageError: blank, or not a reviewer of one of the teams; the message names the reviewers who may own
            it (of every team), or says that no team is in scope.
    """
    name = owner.strip()
    if not name:
        raise GuardUsageError("an incident's owner is a reviewer's name, not blank")
    if not teams:
        raise GuardUsageError("no team's calls are in that scope, so nobody may own an incident on it")

    def reviews_all(person: str) -> bool:
        return all((p := policies.get(t)) is not None and bool(p.roles_of(person)) for t in teams)

    if not reviews_all(name):
        first = policies.get(teams[0])
        named: list[str] = [] if first is None else list(first.reviewers)
        allowed = sorted(r for r in named if reviews_all(r))
        whose = f"team {teams[0]}" if len(teams) == 1 else f"every team in it ({', '.join(teams)})"
        raise GuardUsageError(
            f"owner {name} is not a reviewer of {whose}: an incident's owner must be one of the reviewers its "
            f"policy lists under `reviewers:` ({', '.join(allowed) or 'none'})"
        )
    return name


class IncidentBook:
    """Incidents over one ledger. `systems` names each tool's system: every team's policy (`TeamSystems`), or a
    map of tool glob to name; a tool nothing names is in the system of its prefix."""

    def __init__(self, ledger: Ledger, systems: Systems = None) -> None:
        self.ledger = ledger
        self.book = LedgerIncidents(ledger.conns)
        self.systems: Systems = dict(systems) if isinstance(systems, Mapping) else systems

    def open(
        self,
        scope: Scope,
        *,
        title: str,
        opened_by: str,
        owner: str | None = None,
        next_update_in: float | None = 3600.0,
        policies: Mapping[str, Policy] | None = None,
    ) -> IncidentRecord:
        """Open an incident; its owner defaults to whoever opened it. The next status update is due in an hour
        unless told otherwise.

        With the teams' `policies` (the approval service and the CLI give them), an `owner` named must be a reviewer
        of every team in the incident (`check_owner`).

        Raises:
            GuardUsageError: an owner who is not a reviewer of a team in scope (the message names who may own it),
                or a scope the ledger refuses.
        """
        if owner is not None and policies is not None:
            teams = [scope.team] if scope.team else self.book.teams_in(scope)
            owner = check_owner(owner, teams, policies)
        due = None if next_update_in is None else time.time() + next_update_in
        return self.book.open_incident(
            scope, title=title, opened_by=opened_by, owner=owner or opened_by, next_update_at=due
        )

    def get(self, incident_id: str) -> IncidentRecord:
        found = self.book.get_incident(incident_id)
        if found is None:
            raise GuardUsageError(f"no incident {incident_id}; list them with `guard incident list`")
        return found

    def list(
        self, *, teams: Sequence[str] | None = None, state: str | None = None, limit: int = 100
    ) -> list[IncidentRecord]:
        return self.book.list_incidents(teams=teams, state=state, limit=limit)

    def radius(self, incident_id: str) -> BlastRadius:
        incident = self.get(incident_id)
        return blast_radius(self.book, incident.scope, incident_id=incident_id, systems=self.systems)

    def select(self, incident_id: str, which: RecordFilter) -> list[Record]:
        return [r for r in self.radius(incident_id).records if which.matches(r)]

    def tag(
        self, incident_id: str, which: RecordFilter, verdict: Verdict, *, by: str, note: str | None = None
    ) -> tuple[int, int]:
        """Give `verdict` to the records `which` picks; returns (matched, changed). Refuses an empty filter (tag
        everything with `--all` on purpose) and call ids that are not records of this incident."""
        if which.empty():
            raise GuardUsageError(
                "say which records: call ids, or a filter (system, state, tool, run, external id, verdict)"
            )
        picked = self.select(incident_id, which)
        if which.call_ids:
            missing = sorted(set(which.call_ids) - {r.call_id for r in picked})
            if missing:
                raise GuardUsageError(
                    f"not records of incident {incident_id}: {', '.join(missing[:5])}"
                    + (" ..." if len(missing) > 5 else "")
                )
        changed = self.book.set_verdicts(incident_id, [r.call_id for r in picked], verdict, by=by, note=note)
        if changed:
            self.book.add_note(
                incident_id,
                author=by,
                kind="action",
                text=f"{changed} record(s) judged {verdict}" + (f": {note}" if note else ""),
            )
        return len(picked), changed

    def history(self, incident_id: str, call_id: str | None = None) -> list[dict[str, Any]]:
        self.get(incident_id)
        return self.book.verdict_history(incident_id, call_id)

    def note(self, incident_id: str, text: str, *, by: str) -> int:
        return self.book.add_note(incident_id, author=by, text=text)

    def notes(self, incident_id: str) -> list[IncidentNoteRecord]:
        return self.book.notes(incident_id)

    def log(self, incident_id: str) -> list[dict[str, Any]]:
        """The shared log: the incident's notes and actions, with every pause and lift of its scope's team (or
        runs) since the first run in scope started, oldest first."""
        incident = self.get(incident_id)
        out = [n.to_dict() for n in self.book.notes(incident_id)]
        scope = incident.scope
        since = incident.started_at or incident.opened_at
        for e in self.ledger.pause_events(incident.team):
            detail = json.loads(e.detail)
            if e.at < since or (incident.team is None and detail.get("target") not in (*scope.run_ids, *scope.teams)):
                continue
            what = "paused" if e.to_state == "paused" else "lifted the pause on"
            out.append(
                {
                    "id": None,
                    "incident_id": incident_id,
                    "at": e.at,
                    "author": e.actor,
                    "kind": "action",
                    "text": f"{what} {detail.get('scope')} {detail.get('target')}: {detail.get('reason')}",
                }
            )
        return sorted(out, key=lambda n: n["at"])

    def close(self, incident_id: str, note: str, *, by: str) -> None:
        self.book.close_incident(incident_id, by=by, note=note)

    def next_update(self, incident_id: str, at: float, *, by: str) -> None:
        self.book.set_next_update(incident_id, at, by=by)

    def snapshot(
        self, incident_id: str, path: str | Path, *, by: str, inspect: Inspector | None = None
    ) -> SnapshotTaken:
        return take_snapshot(self.book, incident_id, path, by=by, systems=self.systems, inspect=inspect)

    def verify(self, incident_id: str, path: str | Path | None = None) -> SnapshotCheck:
        return verify_snapshot(self.book, incident_id, path)
