"""Incidents through the approval service: what the REST API and the page both do, with the approvals' authority.

Who may: anyone with a role in the incident's team (its `reviewers:`) sees it, tags its records and adds notes;
its owners and `operator`s (the people who may pause the team, `Policy.may_pause`) open and close incidents. A
reviewer of other teams gets the 404 of an unknown id (no existence oracle); a reviewer of the team who may not
open or close gets 403. Taking the snapshot (which reads records back through the agent's tools) and repairing
(which runs them) need the agent's Guard: `guard incident snapshot|repair --app`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guard.errors import GuardUsageError, IllegalTransition
from guard.incidents import IncidentBook, IncidentRecord, RecordFilter, Scope, Verdict, status_update
from guard.server.desk import Desk, DeskError, Reviewer

__all__ = ["IncidentDesk"]


@dataclass(slots=True)
class IncidentDesk:
    """The incident operations behind the API and the page. Raises DeskError for anything it refuses."""

    desk: Desk

    @property
    def book(self) -> IncidentBook:
        return IncidentBook(self.desk.ledger)

    def _may_operate(self, who: Reviewer, team: str) -> bool:
        policy = self.desk.policies.policies.get(team)
        return policy is not None and policy.may_pause(who.name, None)

    def _visible(self, who: Reviewer, incident_id: str) -> IncidentRecord:
        found = self.book.book.get_incident(incident_id)
        if found is None or found.team is None or not self.desk.roles(who.name, found.team):
            raise DeskError(404, "not_found", f"no incident {incident_id}", incident_id=incident_id)
        return found

    def _operator(self, who: Reviewer, team: str, what: str) -> None:
        if not self._may_operate(who, team):
            raise DeskError(
                403, "forbidden", f"{who.name} may not {what}: only the owners and operators of team {team} may"
            )

    def list(self, who: Reviewer, state: str | None = None) -> list[dict[str, Any]]:
        return [
            {**inc.to_dict(), "may_operate": self._may_operate(who, inc.team or "")}
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
            "may_operate": self._may_operate(who, inc.team or ""),
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
        """Open an incident on a scope of one team (the body's team; runs of another team are not in it)."""
        team = scope.team or ""
        if not self.desk.roles(who.name, team):
            raise DeskError(404, "not_found", f"no team {team}", team=team)
        self._operator(who, team, "open an incident")
        with _refusals():
            inc = self.book.open(scope, title=title, opened_by=who.name, owner=owner)
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
        self._operator(who, inc.team or "", "close an incident")
        with _refusals():
            self.book.close(incident_id, note, by=who.name)
        return self.book.get(incident_id).to_dict()


class _refusals:
    """Ledger refusals as HTTP answers: bad input 422, a closed incident or a taken snapshot 409."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, IllegalTransition):
            raise DeskError(409, "conflict", str(exc)) from exc
        if isinstance(exc, GuardUsageError):
            raise DeskError(422, "invalid", str(exc)) from exc
