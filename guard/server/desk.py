"""The reviewer's desk: what the REST API and the web page both do, over the ledger and the team policies.

Authority comes from the policies (`reviewers:` of each team), as the files say when the reviewer acts (they
are read again when they change, see `LivePolicies`): a reviewer sees
the approvals and runs of the teams that list them, and decides only approvals that need one of their roles
in that team. The ledger decides the rest in one transaction (self-approval, already decided, expiry,
argument hash, quorum), and its refusal codes become HTTP statuses here, once (`DeskError.status`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from guard.canonical import sets_secrets
from guard.errors import ApprovalDecisionError, PolicyError
from guard.identity import same_person
from guard.ledger import ApprovalRecord, Ledger, QueuedApproval, RunRecord, RunState
from guard.policy import LivePolicies, Policy, PolicySet
from guard.runtime.review import review

__all__ = ["Desk", "DeskError", "Reviewer"]

Decision = Literal["approve", "reject"]
# The ledger's refusal codes as HTTP statuses. `already_decided` on an expired approval becomes 410.
_STATUS = {
    "not_found": 404,
    "forbidden": 403,
    "self_approval": 403,
    "already_decided": 409,
    "expired": 410,
    "invalid": 422,
    "denied": 422,
}


class DeskError(Exception):
    """A request the desk refuses: an HTTP status, a stable `code`, a sentence for people, extra fields."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "code": self.code, **self.extra}

    @classmethod
    def from_decision(cls, err: ApprovalDecisionError) -> DeskError:
        code = err.code
        state = err.fields.get("state")
        status = 410 if code == "already_decided" and state == "expired" else _STATUS.get(code, 400)
        decided_by = err.fields.get("decided_by")
        extra: dict[str, Any] = {"approval_id": err.approval_id}
        if state is not None:
            extra["state"] = state
        if decided_by:
            extra["decided_by"] = json.loads(decided_by)
        return cls(status, code, err.message, **extra)


@dataclass(frozen=True, slots=True)
class Reviewer:
    """Who is asking: the reviewer a token (or a session made from one) names."""

    name: str
    token_id: str


@dataclass(slots=True)
class Desk:
    """The operations behind every route. Raises DeskError for anything it refuses."""

    ledger: Ledger
    source: LivePolicies | PolicySet  # a fixed set, or a directory followed as it changes

    @property
    def policies(self) -> PolicySet:
        return self.source.current()

    # -- authority ----------------------------------------------------------------------------------------

    def roles(self, reviewer: str, team: str) -> frozenset[str]:
        """The reviewer's roles in `team`; none when the team's policy is missing or broken (fail closed)."""
        try:
            return self.policies.get(team).roles_of(reviewer)
        except PolicyError:
            return frozenset()

    def teams_of(self, reviewer: str) -> list[str]:
        """The teams whose policy lists the reviewer under `reviewers:` (names compared as people)."""
        return [team for team, policy in self.policies.policies.items() if policy.roles_of(reviewer)]

    def _secrets(self, team: str) -> frozenset[str]:
        try:
            return self.policies.get(team).secret_fields
        except PolicyError:
            return frozenset()

    def team(self, who: Reviewer, team: str) -> Policy:
        """The policy of `team` when `who` reviews for it. A team they do not review for gets the 404 of a team
        that does not exist (no existence oracle across teams)."""
        policy = self.policies.policies.get(team)
        if policy is None or not policy.roles_of(who.name):
            raise DeskError(404, "not_found", f"no team {team}", team=team)
        return policy

    def _visible(self, who: Reviewer, team: str, unknown: DeskError) -> None:
        """Refuse a reviewer of other teams exactly as an unknown id is refused (`unknown`): the answer never
        tells them that the id exists, nor which team owns it."""
        if not self.roles(who.name, team):
            raise unknown

    # -- approvals ----------------------------------------------------------------------------------------

    def queue(self, who: Reviewer) -> list[dict[str, Any]]:
        """Pending approvals this reviewer may decide now: riskiest first, then oldest."""
        now = self.ledger.database_time()
        return [
            self._summary(item, now)
            for item in self.ledger.approval_queue(teams=self.teams_of(who.name))
            if self._allowed(who, item.approval, now)
        ]

    def _allowed(self, who: Reviewer, a: ApprovalRecord, now: float) -> bool:
        """Whether `decide` could accept a decision of this reviewer now (the ledger checks again)."""
        if a.state != "pending" or now >= a.expires_at or same_person(who.name, a.requested_by):
            return False
        if not self.roles(who.name, a.team) & set(a.role_list):
            return False
        on_table = a.approved_args_hash or a.args_hash
        return a.quorum <= 1 or all(
            d.reviewer != who.name or d.args_hash != on_table for d in self.ledger.decisions_of(a.approval_id)
        )

    @staticmethod
    def _summary(item: QueuedApproval, now: float) -> dict[str, Any]:
        a = item.approval
        return {
            "approval_id": a.approval_id,
            "run_id": a.run_id,
            "team": a.team,
            "tool": a.tool,
            "rule": a.rule,
            "side_effect": item.side_effect,
            "risk": item.risk,
            "roles": a.role_list,
            "quorum": a.quorum,
            "requested_by": a.requested_by,
            "requested_at": a.requested_at,
            "expires_at": a.expires_at,
            "age_seconds": round(now - a.requested_at, 3),
            "state": a.state,
            "now": now,
        }

    def _approval(self, who: Reviewer, approval_id: str) -> ApprovalRecord:
        """The approval, when it exists and `who` reviews for its team; one 404 for both otherwise."""
        unknown = DeskError(404, "not_found", f"no approval {approval_id}", approval_id=approval_id)
        a = self.ledger.get_approval(approval_id)
        if a is None:
            raise unknown
        self._visible(who, a.team, unknown)
        return a

    def approval(self, who: Reviewer, approval_id: str) -> dict[str, Any]:
        """The full context of one approval: the exact arguments and hash, the rule, the run so far."""
        a = self._approval(who, approval_id)
        call = self.ledger.get_call(a.call_id)
        run = self.ledger.get_run(a.run_id)
        now = self.ledger.database_time()
        edited = a.approved_args_json is not None and a.approved_args_hash != a.args_hash
        return {
            "approval_id": a.approval_id,
            "call_id": a.call_id,
            "run_id": a.run_id,
            "team": a.team,
            "tool": a.tool,
            "rule": a.rule,
            "side_effect": call.side_effect if call else None,
            "args": json.loads(a.approved_args_json if edited and a.approved_args_json else a.args_json),
            "args_hash": (a.approved_args_hash or a.args_hash) if edited else a.args_hash,
            "edited": edited,
            "requested_args": json.loads(a.args_json),
            "requested_args_hash": a.args_hash,
            "roles": a.role_list,
            "quorum": a.quorum,
            "requested_by": a.requested_by,
            "requested_at": a.requested_at,
            "expires_at": a.expires_at,
            "expired": now >= a.expires_at,
            "now": now,
            "state": a.state,
            "decided_at": a.decided_at,
            "decided_by": json.loads(a.decided_by) if a.decided_by else [],
            "reason": a.reason,
            "decisions": [d.to_dict() for d in self.ledger.decisions_of(a.approval_id)],
            "allowed_decisions": ["approve", "reject"] if self._allowed(who, a, now) else [],
            "run": self.ledger.run_story(run) if run is not None else None,
            "paused": (
                self.ledger.pause_holding(a.team, a.tool, a.run_id)
                if call is not None and call.state == "approved"
                else None
            ),
        }

    def decide(
        self,
        who: Reviewer,
        approval_id: str,
        decision: Decision,
        *,
        reason: str | None,
        args_hash: str,
        edited_args: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record the reviewer's decision on the arguments they were shown (`args_hash`), or approve edited
        arguments (`edited_args`: the approval then binds to their hash and the call runs with them).

        Edited arguments are a new proposal, judged by the team's policy as it is now (`guard.runtime.review`):
        a deny rule, or an argument of the wrong type or missing, refuses them (422, the rule's reason); a rule
        needing other roles or a larger quorum makes them the pending request for those roles.

        A reviewer of other teams gets the 404 of an unknown id; one of the team outside the approval's roles
        is refused before the ledger is asked. Secret fields cannot be edited (they show as `[REDACTED]` and
        keep the agent's value). Everything else is the ledger's one transaction (see `Ledger.decide`).
        """
        a = self._approval(who, approval_id)
        policies = self.policies
        roles = self.roles(who.name, a.team)
        if not roles & set(a.role_list):
            raise DeskError(
                403,
                "forbidden",
                f"{who.name} holds none of the roles {a.role_list} this approval needs in team {a.team}",
                approval_id=approval_id,
            )
        if edited_args is not None and sets_secrets(edited_args, self._secrets(a.team)):
            raise DeskError(
                422,
                "invalid",
                "secret fields cannot be edited: leave them as [REDACTED], the call keeps the agent's value",
                approval_id=approval_id,
            )
        try:
            result = review(
                self.ledger,
                policies,
                approval_id,
                reviewer=who.name,
                decision=decision,
                reason=reason or None,
                shown_args_hash=args_hash,
                edited_args=edited_args,
            )
        except ApprovalDecisionError as err:
            raise DeskError.from_decision(err) from err
        after = result.approval
        pause = self.ledger.pause_holding(after.team, after.tool, after.run_id) if after.state == "approved" else None
        return {
            "approval_id": approval_id,
            "decision": decision,
            "reviewer": who.name,
            "state": after.state,
            "settled": result.settled,
            "repeat": result.repeat,
            "args_hash": after.approved_args_hash or after.args_hash,
            "decided_by": json.loads(after.decided_by) if after.decided_by else [],
            "roles": after.role_list,
            "quorum": after.quorum,
            "paused": pause,
        }

    # -- runs ---------------------------------------------------------------------------------------------

    def runs(self, who: Reviewer, *, team: str | None, state: RunState | None, limit: int) -> list[dict[str, Any]]:
        """Runs of the reviewer's teams (or of one of them: 404 for a team they do not review for), newest first."""
        teams = self.teams_of(who.name) if team is None else [self.team(who, team).team]
        runs: list[RunRecord] = []
        for t in teams:
            runs.extend(self.ledger.list_runs(team=t, state=state, limit=limit))
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return [r.to_dict() for r in runs[:limit]]

    def run(self, who: Reviewer, run_id: str) -> dict[str, Any]:
        unknown = DeskError(404, "not_found", f"no run {run_id}", run_id=run_id)
        run = self.ledger.get_run(run_id)
        if run is None:
            raise unknown
        self._visible(who, run.team, unknown)
        return self.ledger.run_story(run)
