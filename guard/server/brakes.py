"""Pausing and unpausing through the approval service: the kill switch for the people the policy names.

Who may: the owners of the pause point (policy `owners:` of the team, or of the rule naming the tool) and anyone
holding the `operator` role in the team; each alone, with a reason. A reviewer of other teams gets the 404 of an
unknown team (no existence oracle); a reviewer of the team who is neither an owner nor an operator gets 403.
The ledger records who, when and why, on the pause row and as events (`guard.ledger.pauses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guard.errors import GuardUsageError
from guard.ledger import Scope
from guard.policy import Owners, Policy
from guard.server.desk import Desk, DeskError, Reviewer

__all__ = ["Brakes", "PausePoint"]


@dataclass(frozen=True, slots=True)
class PausePoint:
    """What a request pauses: a whole team, a tool (glob) of the team, or one run of it."""

    team: str
    tool: str | None = None
    run_id: str | None = None

    @property
    def scope(self) -> Scope:
        return "run" if self.run_id else "tool" if self.tool else "team"

    @property
    def target(self) -> str:
        return self.run_id or self.tool or self.team


def owners_json(owners: tuple[Owners, ...]) -> list[dict[str, str]]:
    return [{"owner": o.owner, "backup": o.backup} for o in owners]


@dataclass(slots=True)
class Brakes:
    """The pause operations behind the API and the page. Raises DeskError for anything it refuses."""

    desk: Desk

    def _policy(self, who: Reviewer, point: PausePoint) -> Policy:
        """The team's policy when `who` may pause `point` alone; 404 / 403 as the module says."""
        policy = self.desk.team(who, point.team)
        if point.tool and point.run_id:
            raise DeskError(422, "invalid", "pause a tool or a run, not both")
        if point.tool is not None and (len(point.tool) > 200 or any(c.isspace() for c in point.tool)):
            raise DeskError(422, "invalid", "a tool is a name or a glob without spaces, at most 200 characters")
        if point.run_id:
            run = self.desk.ledger.get_run(point.run_id)
            if run is None or run.team != point.team:
                raise DeskError(404, "not_found", f"no run {point.run_id}", run_id=point.run_id)
        if not policy.may_pause(who.name, point.tool):
            names = " / ".join(f"{o.owner} (backup {o.backup})" for o in policy.owners_of(point.tool)) or "nobody"
            raise DeskError(
                403,
                "forbidden",
                f"{who.name} may not pause {point.scope} {point.target}: only its "
                f"owners ({names}) and operators of team {point.team} may",
            )
        return policy

    def pause(self, who: Reviewer, point: PausePoint, reason: str) -> dict[str, Any]:
        """Pause `point` now: the next call it covers is denied before it starts."""
        policy = self._policy(who, point)
        try:
            pause_id = self.desk.ledger.pause(point.scope, point.target, reason=reason, by=who.name, team=point.team)
        except GuardUsageError as err:
            raise DeskError(422, "invalid", str(err)) from err
        return {
            "pause_id": pause_id,
            "scope": point.scope,
            "target": point.target,
            "team": point.team,
            "reason": reason,
            "paused_by": who.name,
            "owners": owners_json(policy.owners_of(point.tool)),
        }

    def unpause(self, who: Reviewer, point: PausePoint, reason: str) -> dict[str, Any]:
        """Lift the team's pauses on `point`; 404 when none is in force."""
        self._policy(who, point)
        try:
            lifted = self.desk.ledger.unpause(point.scope, point.target, by=who.name, reason=reason, team=point.team)
        except GuardUsageError as err:
            raise DeskError(422, "invalid", str(err)) from err
        if lifted == 0:
            raise DeskError(404, "no_pause", f"no active pause on {point.scope} {point.target} in team {point.team}")
        return {
            "lifted": lifted,
            "scope": point.scope,
            "target": point.target,
            "team": point.team,
            "reason": reason,
            "lifted_by": who.name,
        }

    def restart(
        self, who: Reviewer, point: PausePoint, reason: str, stages: list[int], quiet: float | None
    ) -> dict[str, Any]:
        """Start a staged restart of a paused point (`guard.ledger.restarts`); 422 when nothing is paused there, a
        restart is under way, or the stages are not call counts."""
        self._policy(who, point)
        try:
            restart_id = self.desk.ledger.start_restart(
                point.scope, point.target, stages=stages, by=who.name, reason=reason, team=point.team, quiet=quiet
            )
        except GuardUsageError as err:
            raise DeskError(422, "invalid", str(err)) from err
        return self._restart(restart_id)

    def confirm(self, who: Reviewer, point: PausePoint, reason: str) -> dict[str, Any]:
        """Confirm the held stage of a staged restart: the next stage passes, or the pause is lifted; 409 when
        the stage has not filled yet, 404 when no restart is under way."""
        self._policy(who, point)
        active = [
            r
            for r in self.desk.ledger.restarts([point.team], active_only=True)
            if (r["scope"], r["target"]) == (point.scope, point.target)
        ]
        if not active:
            raise DeskError(404, "no_restart", f"no staged restart of {point.scope} {point.target} is under way")
        try:
            self.desk.ledger.confirm_restart(point.scope, point.target, by=who.name, reason=reason, team=point.team)
        except GuardUsageError as err:
            raise DeskError(409 if "once it holds" in str(err) else 422, "invalid", str(err)) from err
        return self._restart(active[0]["id"])

    def restarts(self, who: Reviewer) -> list[dict[str, Any]]:
        """The staged restarts of the reviewer's teams, each with its steps (who, when, which stage, why)."""
        policies = self.desk.policies.policies
        out: list[dict[str, Any]] = []
        for r in self.desk.ledger.restarts(self.desk.teams_of(who.name)):
            policy = policies.get(r["team"] or "")
            tool = r["target"] if r["scope"] == "tool" else None
            out.append(
                {
                    **r,
                    "steps": self.desk.ledger.restart_events(r["id"]),
                    "may_confirm": policy is not None and policy.may_pause(who.name, tool),
                }
            )
        return out

    def _restart(self, restart_id: int) -> dict[str, Any]:
        [r] = [r for r in self.desk.ledger.restarts() if r["id"] == restart_id]
        return {**r, "steps": self.desk.ledger.restart_events(restart_id)}

    def active(self, who: Reviewer) -> list[dict[str, Any]]:
        """The pauses in force in the reviewer's teams, each with its owners and whether `who` may lift it."""
        policies = self.desk.policies.policies
        out: list[dict[str, Any]] = []
        for p in self.desk.ledger.active_pauses(teams=self.desk.teams_of(who.name)):
            policy = policies[p["team"]]
            tool = p["target"] if p["scope"] == "tool" else None
            out.append(
                {**p, "owners": owners_json(policy.owners_of(tool)), "may_lift": policy.may_pause(who.name, tool)}
            )
        return out
