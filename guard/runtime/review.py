"""A reviewer's decision judged by the team's policy as it is now: the one way people decide.

Every front door (the approval service, `guard approvals approve|reject`, `guard.testing.ScriptedReviewer`)
decides through `review`, and the agent checks the same facts again before an approved call runs
(`still_approved`):

- the deciding reviewer's roles, and every other voter's, come from the team's current policy: a vote stands
  only while its reviewer still holds one of the approval's roles;
- edited arguments are a new proposal, classified exactly as an agent's call of the same tool with those
  arguments would be (`edit_gate`): a deny rule, a wrong-typed or missing argument refuses the edit; a rule
  that needs other roles or a larger quorum makes the edit the pending request for those.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from guard.errors import ApprovalDecisionError, PolicyError
from guard.identity import same_person
from guard.ledger import ApprovalRecord, DecisionResult, EditGate, Ledger, RolesNow
from guard.policy import Decision, Policy, PolicySet, Verdict, load_policy

__all__ = ["edit_gate", "policies_now", "review", "roles_in", "still_approved"]


def roles_in(policies: PolicySet, team: str) -> RolesNow:
    """Who holds which roles in `team` now; nobody when its policy is missing or broken (fail closed)."""
    try:
        policy: Policy | None = policies.get(team)
    except PolicyError:
        policy = None
    return policy.roles_of if policy is not None else (lambda _name: frozenset())


def edit_gate(policies: PolicySet, team: str, tool: str, edited_args: Mapping[str, Any]) -> EditGate:
    """The policy's verdict on edited arguments, as it would be on an agent's call of `tool` with them."""
    return gate_of(policies.classify(team, tool, edited_args))


def gate_of(decision: Decision) -> EditGate:
    """A classification as the ledger records it for an edit."""
    side_effect = decision.side_effect.value if decision.side_effect is not None else None
    common: dict[str, Any] = {
        "reason": decision.reason,
        "rule": decision.rule,
        "side_effect": side_effect,
        "policy_version": decision.policy_version,
    }
    if decision.verdict is Verdict.DENY:
        return EditGate("deny", **common)
    if decision.verdict is Verdict.APPROVE and decision.approval is not None:
        return EditGate("approve", roles=decision.approval.roles, quorum=decision.approval.quorum, **common)
    return EditGate("allow", **common)


def review(
    ledger: Ledger,
    policies: PolicySet,
    approval_id: str,
    *,
    reviewer: str,
    decision: Literal["approve", "reject"],
    reason: str | None = None,
    shown_args_hash: str | None = None,
    edited_args: Mapping[str, Any] | None = None,
) -> DecisionResult:
    """Record `reviewer`'s decision with the authority the team's policy gives now (see `Ledger.decide`).

    Raises:
        ApprovalDecisionError: refused; `code` says why (`denied` when the policy refuses edited arguments).
    """
    approval = ledger.get_approval(approval_id)
    if approval is None:
        raise ApprovalDecisionError(
            f"no approval {approval_id}; list them with `guard approvals list`",
            approval_id=approval_id,
            code="not_found",
            reason="not found",
        )
    roles_now = roles_in(policies, approval.team)
    gate = edit_gate(policies, approval.team, approval.tool, edited_args) if edited_args is not None else None
    return ledger.decide(
        approval_id,
        reviewer=reviewer,
        decision=decision,
        reviewer_roles=roles_now(reviewer),
        reason=reason,
        shown_args_hash=shown_args_hash,
        edited_args=edited_args,
        edit_gate=gate,
        roles_now=roles_now,
    )


def policies_now(policies: PolicySet, team: str) -> PolicySet:
    """The team's policy as its file says now (read again), for judging an approval before its call runs; the
    set itself when it was built in code. A file broken since is that team's error: nothing is approved."""
    if policies.directory is None:
        return policies
    path = Path(policies.directory) / f"{team}.yaml"
    try:
        return PolicySet({team: load_policy(path)}, {}, policies.directory)
    except PolicyError as exc:
        return PolicySet({}, {team: exc}, policies.directory)


def still_approved(approval: ApprovalRecord, decision: Decision, roles_now: RolesNow) -> str | None:
    """Why an approved call may not run now, or None when it may: judged again when the agent resumes it.

    `decision` is the policy's classification of the exact arguments about to run (a reviewer's edit with the
    agent's secret values). They must not be denied, and enough of the reviewers who approved (distinct people,
    never the requester) must hold now one of the roles those arguments need (the approval's own roles when
    the policy would let them run unheld), at least as many as the larger of the two quorums.
    """
    if decision.verdict is Verdict.DENY:
        return f"the policy now denies the arguments that were approved: {decision.reason}"
    needed = decision.approval
    roles = set(needed.roles) if needed is not None else set(approval.role_list)
    quorum = max(needed.quorum, approval.quorum) if needed is not None else approval.quorum
    counted: list[str] = []
    for voter in approval.decider_list:
        if same_person(voter, approval.requested_by) or any(same_person(voter, c) for c in counted):
            continue
        if roles_now(voter) & roles:
            counted.append(voter)
    if len(counted) < quorum:
        gone = sorted(set(approval.decider_list) - set(counted)) or ["nobody"]
        return (
            f"{len(counted)} of the {quorum} approval(s) by role {' or '.join(sorted(roles))} it needs "
            f"(rule {decision.rule}) stand now; not counted: {', '.join(gone)}"
        )
    return None
