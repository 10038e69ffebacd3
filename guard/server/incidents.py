"""Incidents through the approval service: what the REST API and the page both do, with the approvals' authority.

Who may: anyone with a role in the incident's team (its `reviewers:`) sees it, tags its records and adds notes;
its owners and `operator`s (the people who may pause the team, `Policy.may_pause`) open and close incidents, take
its snapshot and repair it. An incident over several teams' runs asks the same of every one of its teams (the
teams its runs belonged to when it was opened): opening one, seeing it, tagging it, repairing it. A reviewer of
other teams gets the 404 of an unknown id (no existence oracle); a reviewer of the team who may not act gets 403.

Snapshot and repair: the service holds the agent's tools only when it was started with them (`guard serve --app
MODULE:GUARD`, an `IncidentAgent`). Then a snapshot reads each record back through its tool's `.inspect` hook and
a repair runs the compensations, in the request, one repair at a time per process (another waits its turn: 409);
without it, a snapshot holds the ledger's facts only (`inspected: 0`) and a repair is refused with 409
`no_agent_tools`, naming the CLI (`guard incident repair --app`) or the `--app` to start the service with. Every
repair is keyed `repair:<call id>`, so two replicas or a retried request never run one twice.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.errors import GuardUsageError, IllegalTransition
from guard.incidents import IncidentBook, IncidentRecord, RecordFilter, Scope, TeamSystems, Verdict, status_update
from guard.server.desk import Desk, DeskError, Reviewer

if TYPE_CHECKING:
    from guard.runtime import Guard

__all__ = ["IncidentAgent", "IncidentDesk"]


@dataclass(slots=True)
class IncidentAgent:
    """What snapshots and repairs over the API need: where snapshot files go (`snapshots`, made when first used)
    and, when the service was started with it, the agent's Guard (its tools, their compensations and `.inspect`
    hooks) on the service's own ledger."""

    snapshots: Path
    guard: Guard | None = None
    repairing: threading.Lock = field(default_factory=threading.Lock)


@dataclass(slots=True)
class IncidentDesk:
    """The incident operations behind the API and the page. Raises DeskError for anything it refuses."""

    desk: Desk
    agent: IncidentAgent | None = None

    @property
    def book(self) -> IncidentBook:
        """The incidents, each record in the system its team's policy names (as the files say now)."""
        return IncidentBook(self.desk.ledger, systems=TeamSystems(self.desk.policies.policies))

    def _may_operate(self, who: Reviewer, teams: Sequence[str]) -> bool:
        """An owner or operator of every one of `teams` (none: nobody)."""
        policies = self.desk.policies.policies
        return bool(teams) and all(
            (p := policies.get(team)) is not None and p.may_pause(who.name, None) for team in teams
        )

    def _reviews(self, who: Reviewer, teams: Sequence[str]) -> bool:
        """A role in every one of `teams` (none: nobody)."""
        return bool(teams) and all(self.desk.roles(who.name, team) for team in teams)

    def _visible(self, who: Reviewer, incident_id: str) -> IncidentRecord:
        found = self.book.book.get_incident(incident_id)
        if found is None or not self._reviews(who, found.teams):
            raise DeskError(404, "not_found", f"no incident {incident_id}", incident_id=incident_id)
        return found

    def _operator(self, who: Reviewer, teams: Sequence[str], what: str) -> None:
        if not self._may_operate(who, teams):
            whose = f"team {teams[0]}" if len(teams) == 1 else f"every team in it ({', '.join(teams)})"
            raise DeskError(
                403, "forbidden", f"{who.name} may not {what}: only the owners and operators of {whose} may"
            )

    def operable_teams(self, who: Reviewer) -> list[str]:
        """The teams `who` may open incidents for (owner or operator)."""
        return [team for team in self.desk.teams_of(who.name) if self._may_operate(who, [team])]

    def list(self, who: Reviewer, state: str | None = None) -> list[dict[str, Any]]:
        return [
            {**inc.to_dict(), "may_operate": self._may_operate(who, inc.teams)}
            for inc in self.book.list(teams=self.desk.teams_of(who.name), state=state)
        ]

    def show(self, who: Reviewer, incident_id: str) -> dict[str, Any]:
        inc = self._visible(who, incident_id)
        book = self.book
        radius = book.radius(incident_id)
        return {
            **inc.to_dict(),
            "status": status_update(book, incident_id),
            "summary": radius.summary(),
            "by_system": radius.by_system_state(),
            "verdicts": radius.verdict_totals(),
            "log": book.log(incident_id),
            "may_operate": self._may_operate(who, inc.teams),
        }

    def records(self, who: Reviewer, incident_id: str, which: RecordFilter) -> list[dict[str, Any]]:
        self._visible(who, incident_id)
        return [r.to_dict() for r in self.book.select(incident_id, which)]

    def csv(self, who: Reviewer, incident_id: str) -> str:
        self._visible(who, incident_id)
        return self.book.radius(incident_id).to_csv()

    def history(self, who: Reviewer, incident_id: str, call_id: str | None) -> list[dict[str, Any]]:
        self._visible(who, incident_id)
        return self.book.history(incident_id, call_id)

    def open(self, who: Reviewer, scope: Scope, *, title: str, owner: str | None) -> dict[str, Any]:
        """Open an incident on a scope of one team (its `team`: runs of another team are not in it), or on runs of
        several teams (no `team`): then the teams their calls belong to now are fixed in the scope, and the opener
        must be an owner or operator of every one of them.

        Raises:
            DeskError: 404 when the opener has no role in a team of the scope (or it holds no calls), 403 when
                they may not act for one of them, 422 for a scope the ledger refuses or an `owner` who is not a
                reviewer of every team in it (`guard.incidents.check_owner`: the answer names who may own it).
        """
        if scope.team:
            teams = [scope.team]
        else:
            teams = self.book.book.teams_in(scope)  # globs aside: a superset, so never fewer teams to answer to
            if teams:
                scope = replace(scope, team=teams[0]) if len(teams) == 1 else replace(scope, teams=tuple(teams))
        if not self._reviews(who, teams):
            raise DeskError(404, "not_found", "no runs in that scope that you review for")
        self._operator(who, teams, "open an incident")
        with _refusals():
            inc = self.book.open(
                scope, title=title, opened_by=who.name, owner=owner, policies=self.desk.policies.policies
            )
        return inc.to_dict()

    def tag(
        self, who: Reviewer, incident_id: str, verdict: Verdict, which: RecordFilter, note: str | None
    ) -> dict[str, Any]:
        self._visible(who, incident_id)
        with _refusals():
            matched, changed = self.book.tag(incident_id, which, verdict, by=who.name, note=note)
        radius = self.book.radius(incident_id)
        return {
            "matched": matched,
            "changed": changed,
            "verdicts": radius.verdict_totals(),
            "summary": radius.summary(),
        }

    def note(self, who: Reviewer, incident_id: str, text: str) -> dict[str, Any]:
        self._visible(who, incident_id)
        with _refusals():
            note_id = self.book.note(incident_id, text, by=who.name)
        return {"note_id": note_id}

    def close(self, who: Reviewer, incident_id: str, note: str) -> dict[str, Any]:
        inc = self._visible(who, incident_id)
        self._operator(who, inc.teams, "close an incident")
        with _refusals():
            self.book.close(incident_id, note, by=who.name)
        return self.book.get(incident_id).to_dict()

    def snapshot(self, who: Reviewer, incident_id: str) -> dict[str, Any]:
        """Take the incident's snapshot into the service's snapshot directory (`<id>.jsonl`), reading records back
        through the agent's `.inspect` hooks when the service holds its tools."""
        from guard.incidents.repair import inspector_for

        inc = self._visible(who, incident_id)
        self._operator(who, inc.teams, "take the snapshot")
        agent = self.agent
        if agent is None:
            raise DeskError(409, "no_agent_tools", "this service takes no snapshots: it has no snapshot directory")
        agent.snapshots.mkdir(parents=True, exist_ok=True)
        inspect = None if agent.guard is None else inspector_for(agent.guard)
        with _refusals():
            taken = self.book.snapshot(
                incident_id, agent.snapshots / f"{incident_id}.jsonl", by=who.name, inspect=inspect
            )
        return {
            "path": taken.path,
            "sha256": taken.digest,
            "records": taken.records,
            "inspected": taken.inspected,
            "read_back": agent.guard is not None,
            "seconds": taken.seconds,
        }

    def snapshot_file(self, who: Reviewer, incident_id: str) -> Path:
        """The snapshot file as recorded, for a reviewer of the incident to download (404 when none is here)."""
        inc = self._visible(who, incident_id)
        path = Path(inc.snapshot_path) if inc.snapshot_path else None
        if path is None or not path.is_file():
            raise DeskError(404, "not_found", f"no snapshot file of incident {incident_id} on this replica")
        return path

    def repair(
        self, who: Reviewer, incident_id: str, *, sample: int | None, rest: bool, repair_tool: str | None
    ) -> dict[str, Any]:
        """Repair the records judged wrong (a sample, then the rest) with the agent's compensations, as the CLI's
        `guard incident repair` does; owners and operators of every team in the incident."""
        from guard.incidents.repair import repair

        inc = self._visible(who, incident_id)
        self._operator(who, inc.teams, "repair")
        guard = None if self.agent is None else self.agent.guard
        if guard is None or self.agent is None:
            raise DeskError(
                409,
                "no_agent_tools",
                "this service was started without the agent's tools, so it cannot run their compensations: "
                f"run `guard incident repair {incident_id} --app MODULE:GUARD`, or start the service with "
                "`guard serve --app MODULE:GUARD`",
            )
        if not self.agent.repairing.acquire(blocking=False):
            raise DeskError(409, "repair_running", "a repair is under way on this service: try again when it ends")
        try:
            with _refusals():
                report = repair(
                    guard,
                    self.book,
                    incident_id,
                    operator=who.name,
                    sample=sample,
                    rest=rest,
                    repair_tool=repair_tool,
                )
        finally:
            self.agent.repairing.release()
        return report.to_json()


class _refusals:
    """Ledger refusals as HTTP answers: bad input 422, a closed incident or a taken snapshot 409."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, IllegalTransition):
            raise DeskError(409, "conflict", str(exc)) from exc
        if isinstance(exc, GuardUsageError):
            raise DeskError(422, "invalid", str(exc)) from exc
