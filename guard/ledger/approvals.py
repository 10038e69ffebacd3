"""Approval decisions in the ledger: who may decide, quorum, expiry, one winner per approval.

A decision is one write transaction that holds the approval's lock (`approval:<id>`), so two reviewers deciding
at the same instant, on two replicas or one, are serialised: exactly one settles the approval, the other gets
`already_decided` naming the winner, and every vote of a quorum is counted by the next one.
Authority (the reviewer's roles) comes from the caller, who read it from the team's policy: the deciding
reviewer's roles, every other voter's roles as they are now (`roles_now`), and the policy's verdict on edited
arguments (`EditGate`). The ledger knows no policy; it records what it was told and counts by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from guard.canonical import canonical_json
from guard.errors import ApprovalDecisionError, IllegalTransition
from guard.identity import same_person
from guard.ledger.backend import Connections
from guard.ledger.digests import claim
from guard.ledger.moves import EventIn, append_events, cas_call, move_run_if
from guard.ledger.records import ApprovalRecord, CallRecord
from guard.ledger.signals import announce, changed
from guard.ledger.states import ApprovalState, CallState, RunState

__all__ = ["DecisionResult", "EditGate", "LedgerApprovals", "RolesNow", "approval_lock"]

_MAX_EDIT_BYTES = 64 * 1024

A = ApprovalState


def approval_lock(approval_id: str) -> str:
    """The lock every decision, expiry and withdrawal of one approval holds (see `Connections.write`)."""
    return "approval:" + approval_id


RolesNow = Callable[[str], frozenset[str]]
"""The roles a reviewer holds in the approval's team now (from the team's current policy)."""


@dataclass(frozen=True, slots=True)
class EditGate:
    """The team policy's verdict on a reviewer's edited arguments, judged as an agent's call would be.

    `verdict`: "deny" (the edit is refused with `reason`, the call keeps waiting), "approve" (the edit becomes the
    pending request for `roles` and `quorum`), or "allow" (the policy would let it run unheld: the gate already
    on the table stays, a human gate is never lowered by an edit). `rule`, `side_effect` and `policy_version`
    name what decided it; all of it goes into the ledger's record of the edit.
    """

    verdict: Literal["approve", "allow", "deny"]
    reason: str
    rule: str | None = None
    side_effect: str | None = None
    roles: tuple[str, ...] = ()
    quorum: int = 1
    policy_version: str = ""

    def detail(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "rule": self.rule,
            "side_effect": self.side_effect,
            "roles": list(self.roles),
            "quorum": self.quorum,
            "reason": self.reason,
            "policy_version": self.policy_version,
        }


@dataclass(frozen=True, slots=True)
class DecisionResult:
    """The approval after a decision; `settled` when it decided the approval, `repeat` for a replay."""

    approval: ApprovalRecord
    settled: bool
    repeat: bool = False


class LedgerApprovals:
    conns: Connections

    def decide(
        self,
        approval_id: str,
        *,
        reviewer: str,
        decision: Literal["approve", "reject"],
        reviewer_roles: frozenset[str],
        reason: str | None = None,
        shown_args_hash: str | None = None,
        edited_args: Mapping[str, Any] | None = None,
        edit_gate: EditGate | None = None,
        roles_now: RolesNow | None = None,
    ) -> DecisionResult:
        """Record one reviewer's decision (see `_decide`); a decision that settled the approval wakes this
        process's waiting agents at once."""
        result = self._decide(
            approval_id,
            reviewer=reviewer,
            decision=decision,
            reviewer_roles=reviewer_roles,
            reason=reason,
            shown_args_hash=shown_args_hash,
            edited_args=edited_args,
            edit_gate=edit_gate,
            roles_now=roles_now,
        )
        if result.settled:
            changed(self.conns.backend.url)
        return result

    def _decide(
        self,
        approval_id: str,
        *,
        reviewer: str,
        decision: Literal["approve", "reject"],
        reviewer_roles: frozenset[str],
        reason: str | None = None,
        shown_args_hash: str | None = None,
        edited_args: Mapping[str, Any] | None = None,
        edit_gate: EditGate | None = None,
        roles_now: RolesNow | None = None,
    ) -> DecisionResult:
        """Record one reviewer's decision. Raises ApprovalDecisionError with a `code` when not allowed.

        `edited_args` (approve only) is a new proposal, and `edit_gate` is the team policy's verdict on it (an
        edit nobody judged is refused). Denied: refused with code `denied` and the rule's reason; the refused edit
        is recorded (an event with the verdict), nothing else changes and the call keeps waiting. Otherwise the
        approval binds to the edited arguments' hash and takes the edit's roles and quorum; approvals given to
        earlier arguments stop counting; the agent's call runs with the edited arguments (secret fields keep the
        agent's values; see the runtime). The editor's own approval counts only if they hold one of the edit's
        roles; else it is recorded as `edit` (a proposal, no vote).

        The quorum is judged at every vote, from the approvals of the arguments on the table by distinct people
        (`guard.identity`) who hold one of the approval's roles now (`roles_now`; without it every recorded vote
        stands), never the requester's. The decision and settle events name the votes counted and those that no
        longer count, and why.

        Codes: not_found, expired (the expiry is recorded first; judged by the database clock), forbidden (no
        approver role), self_approval, denied (the policy refuses the edited arguments), invalid (a rejection
        without a reason, arguments that changed since shown, edited arguments that are not a JSON object or
        were not judged), already_decided (names who settled it). The same reviewer repeating the same decision
        on the same arguments is a replay: nothing changes, `repeat` is True.
        """
        if decision == "reject" and not (reason and reason.strip()):
            raise ApprovalDecisionError(
                "a rejection needs a reason: the agent and the audit trail show it",
                approval_id=approval_id,
                code="invalid",
                reason="missing reason",
            )
        edit = _edit(approval_id, decision, edited_args)
        expired = False
        refused: ApprovalDecisionError | None = None
        with self.conns.write(lock=approval_lock(approval_id)) as cur:
            announce(cur, self.conns.backend.url)  # other processes' waiters read the ledger once this commits
            now = self.conns.backend.clock(cur)
            approval = self._approval(cur, approval_id)
            on_table = approval.approved_args_hash or approval.args_hash
            decided_on = edit[0] if edit is not None else on_table
            cur.execute(
                "SELECT decision, args_hash FROM approval_decisions WHERE approval_id = ? AND reviewer = ?",
                (approval_id, reviewer),
            )
            mine = cur.fetchone()
            if (
                mine is not None
                and mine[1] == decided_on
                and (mine[0] == decision or (mine[0] == "edit" and edit is not None))
            ):
                return DecisionResult(approval, settled=False, repeat=True)
            if approval.state != A.PENDING:
                raise self._refuse(
                    approval,
                    "already_decided",
                    f"approval {approval_id} is already {approval.state} "
                    f"(by {', '.join(json.loads(approval.decided_by or '[]')) or 'expiry'})",
                )
            revising = edit is not None and edit[0] != on_table  # a new edit replaces what is on the table
            if mine is not None and mine[1] == on_table and not revising:
                raise self._refuse(approval, "already_decided", f"{reviewer} already decided {mine[0]}")
            if now >= approval.expires_at:
                self._settle(cur, approval, A.EXPIRED, CallState.EXPIRED, now, "guard", "approval expired")
                expired = True
            else:
                self._check_authority(approval, reviewer, reviewer_roles, shown_args_hash, on_table)
                vote: str = decision
                if edit is not None and revising:
                    if edit_gate is None:
                        raise self._refuse(
                            approval,
                            "invalid",
                            "edited arguments are a new proposal the team's "
                            "policy must judge first: decide through the approval service or "
                            "`guard approvals approve --edit`",
                        )
                    if edit_gate.verdict == "deny":
                        self._record_edit(cur, approval, reviewer, edit, edit_gate, now, "edit_denied")
                        refused = self._refuse(
                            approval,
                            "denied",
                            f"the policy refuses the edited arguments: {edit_gate.reason}; "
                            "nothing was approved and the call keeps waiting",
                        )
                    else:
                        approval = self._propose(cur, approval, reviewer, edit, edit_gate, now)
                        if not reviewer_roles & set(approval.role_list):
                            vote = "edit"  # a proposal for the roles the edit needs, which the editor lacks
                if refused is None:
                    return self._vote(
                        cur,
                        approval,
                        reviewer,
                        vote,
                        reason,
                        decided_on,
                        edit[1] if edit is not None else None,
                        now,
                        roles_now,
                    )
        if refused is not None:
            raise refused
        if expired:
            raise ApprovalDecisionError(
                f"approval {approval_id} expired before the decision; nothing ran",
                approval_id=approval_id,
                code="expired",
                reason="expired",
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def expire_if_due(self, approval_id: str) -> bool:
        """Expire a pending approval whose expiry has passed by the database clock (its call ends `expired`).
        True if it did."""
        with self.conns.write(lock=approval_lock(approval_id)) as cur:
            now = self.conns.backend.clock(cur)
            approval = self._approval(cur, approval_id)
            if approval.state != A.PENDING or now < approval.expires_at:
                return False
            announce(cur, self.conns.backend.url)
            self._settle(cur, approval, A.EXPIRED, CallState.EXPIRED, now, "guard", "approval expired")
        changed(self.conns.backend.url)
        return True

    def withdraw(self, approval_id: str, *, reason: str, actor: str) -> bool:
        """End an approval nobody should act on any more (what it approves is superseded): the call ends
        `expired` with `reason` and never runs. A pending approval expires with it; an approved one stays as it
        was given, while its call, approved but not started yet, expires. True if a call was ended."""
        with self.conns.write(lock=approval_lock(approval_id)) as cur:
            now = self.conns.backend.clock(cur)
            approval = self._approval(cur, approval_id)
            announce(cur, self.conns.backend.url)  # (when nothing is withdrawn: one wake-up for nothing, rare)
            if approval.state == A.PENDING:
                self._settle(cur, approval, A.EXPIRED, CallState.EXPIRED, now, actor, reason)
            elif approval.state == A.APPROVED:
                cur.execute(f"SELECT {CallRecord.sql_columns()} FROM calls WHERE call_id = ?", (approval.call_id,))
                call = CallRecord.from_row(cur.fetchone())
                if call.state != CallState.APPROVED:
                    return False  # it started (or ended) already: there is nothing left to withdraw
                try:
                    self._never_runs(
                        cur,
                        approval,
                        call,
                        CallState.EXPIRED,
                        now,
                        actor,
                        reason,
                        f"call {call.call_id} withdrawn: {reason}",
                    )
                except IllegalTransition:
                    # Its worker started it between the read above and the compare-and-set (an offer holds the
                    # run's lock, not this approval's): the same as found started; nothing was written.
                    return False
            else:
                return False
        changed(self.conns.backend.url)
        return True

    def database_time(self) -> float:
        """The database clock now (Unix seconds): for showing what is expired the way `decide` judges it."""
        with self.conns.read() as cur:
            return self.conns.backend.clock(cur)

    # -- steps --------------------------------------------------------------------------------------------

    def _approval(self, cur: Any, approval_id: str) -> ApprovalRecord:
        cur.execute(f"SELECT {ApprovalRecord.sql_columns()} FROM approvals WHERE approval_id = ?", (approval_id,))
        row = cur.fetchone()
        if row is None:
            raise ApprovalDecisionError(
                f"no approval {approval_id}; list them with `guard approvals list`",
                approval_id=approval_id,
                code="not_found",
                reason="not found",
            )
        return ApprovalRecord.from_row(row)

    @staticmethod
    def _refuse(approval: ApprovalRecord, code: str, reason: str) -> ApprovalDecisionError:
        return ApprovalDecisionError(
            reason,
            approval_id=approval.approval_id,
            code=code,
            reason=reason,
            state=approval.state,
            decided_by=approval.decided_by,
        )

    def _check_authority(
        self, approval: ApprovalRecord, reviewer: str, roles: frozenset[str], shown_args_hash: str | None, on_table: str
    ) -> None:
        if same_person(reviewer, approval.requested_by):
            raise self._refuse(approval, "self_approval", f"{reviewer} asked for this call and cannot decide it")
        allowed = set(approval.role_list)
        if not roles & allowed:
            raise self._refuse(
                approval,
                "forbidden",
                f"{reviewer} holds none of the roles {sorted(allowed)} this approval needs in team {approval.team}",
            )
        if shown_args_hash is not None and shown_args_hash != on_table:
            raise self._refuse(
                approval,
                "invalid",
                "the arguments shown to you are not the ones waiting; reload the approval and decide again",
            )

    def _propose(
        self, cur: Any, approval: ApprovalRecord, reviewer: str, edit: tuple[str, str], gate: EditGate, now: float
    ) -> ApprovalRecord:
        """Put a reviewer's edited arguments on the table as the pending request: for the roles and quorum the
        policy's verdict names (an `allow` verdict keeps the gate on the table)."""
        if gate.verdict == "approve":
            cur.execute(
                "UPDATE approvals SET approved_args_hash = ?, approved_args_json = ?, roles = ?, quorum = ?, "
                "rule = ? WHERE approval_id = ? AND state = ?",
                (
                    edit[0],
                    edit[1],
                    json.dumps(list(gate.roles)),
                    gate.quorum,
                    gate.rule,
                    approval.approval_id,
                    A.PENDING,
                ),
            )
        else:
            cur.execute(
                "UPDATE approvals SET approved_args_hash = ?, approved_args_json = ? "
                "WHERE approval_id = ? AND state = ?",
                (edit[0], edit[1], approval.approval_id, A.PENDING),
            )
        self._record_edit(cur, approval, reviewer, edit, gate, now, "edited")
        return self._approval(cur, approval.approval_id)

    @staticmethod
    def _record_edit(
        cur: Any, approval: ApprovalRecord, reviewer: str, edit: tuple[str, str], gate: EditGate, now: float, what: str
    ) -> None:
        """The edit, its arguments (secrets stay redacted) and the policy's verdict on it, in the audit trail."""
        detail = {
            "args_hash": edit[0],
            "from_hash": approval.approved_args_hash or approval.args_hash,
            "args": json.loads(edit[1]),
            **gate.detail(),
        }
        append_events(
            cur,
            [(approval.run_id, approval.call_id, now, reviewer, "approval", A.PENDING, what, json.dumps(detail))],
            [claim(cur, "approvals", approval.approval_id)],
        )

    def _vote(
        self,
        cur: Any,
        approval: ApprovalRecord,
        reviewer: str,
        vote: str,
        reason: str | None,
        args_hash: str,
        edited_json: str | None,
        now: float,
        roles_now: RolesNow | None,
    ) -> DecisionResult:
        """Record the vote (replacing the reviewer's vote on earlier arguments), judge the quorum, settle if met."""
        cur.execute(
            "DELETE FROM approval_decisions WHERE approval_id = ? AND reviewer = ?", (approval.approval_id, reviewer)
        )
        cur.execute(
            "INSERT INTO approval_decisions (approval_id, reviewer, decision, reason, args_hash, "
            "edited_args_json, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (approval.approval_id, reviewer, vote, reason, args_hash, edited_json, now),
        )
        tally = self._tally(cur, approval, roles_now)
        append_events(
            cur,
            [
                (
                    approval.run_id,
                    approval.call_id,
                    now,
                    reviewer,
                    "approval",
                    A.PENDING,
                    f"decision:{vote}",
                    json.dumps({"reason": reason, "args_hash": args_hash, **tally}),
                )
            ],
            [claim(cur, "approval_decisions", approval.approval_id, reviewer)],
        )
        settled = False
        if vote == "reject":
            self._settle(
                cur, approval, A.REJECTED, CallState.REJECTED, now, reviewer, reason or "", deciders=[reviewer]
            )
            settled = True
        elif len(tally["counted"]) >= approval.quorum:
            self._settle(
                cur,
                approval,
                A.APPROVED,
                CallState.APPROVED,
                now,
                reviewer,
                reason or "",
                deciders=tally["counted"],
                tally=tally,
            )
            settled = True
        return DecisionResult(self._approval(cur, approval.approval_id), settled=settled)

    @staticmethod
    def _tally(cur: Any, approval: ApprovalRecord, roles_now: RolesNow | None) -> dict[str, Any]:
        """The approvals of the arguments on the table that count now: one per person, never the requester's,
        only of reviewers who hold one of the approval's roles at this moment; and those that do not, and why."""
        cur.execute(
            "SELECT reviewer FROM approval_decisions WHERE approval_id = ? AND decision = 'approve' "
            "AND args_hash = ? ORDER BY id",
            (approval.approval_id, approval.approved_args_hash or approval.args_hash),
        )
        roles = set(approval.role_list)
        counted: list[str] = []
        not_counted: dict[str, str] = {}
        for (voter,) in cur.fetchall():
            if same_person(voter, approval.requested_by):
                not_counted[voter] = "asked for this call"
            elif any(same_person(voter, other) for other in counted):
                not_counted[voter] = "the same person as another approver"
            elif roles_now is not None and not roles_now(voter) & roles:
                not_counted[voter] = f"holds none of the roles {sorted(roles)} now"
            else:
                counted.append(voter)
        return {"quorum": approval.quorum, "roles": sorted(roles), "counted": counted, "not_counted": not_counted}

    def _settle(
        self,
        cur: Any,
        approval: ApprovalRecord,
        state: ApprovalState,
        call_state: CallState,
        now: float,
        actor: str,
        reason: str,
        deciders: list[str] | None = None,
        tally: dict[str, Any] | None = None,
    ) -> None:
        approved = state is A.APPROVED
        cur.execute(
            "UPDATE approvals SET state = ?, decided_at = ?, decided_by = ?, reason = ?, "
            "approved_args_hash = ?, approved_args_json = ? WHERE approval_id = ? AND state = ?",
            (
                state,
                now,
                json.dumps(deciders or []),
                reason,
                (approval.approved_args_hash or approval.args_hash) if approved else None,
                approval.approved_args_json if approved else None,
                approval.approval_id,
                A.PENDING,
            ),
        )
        cur.execute(f"SELECT {CallRecord.sql_columns()} FROM calls WHERE call_id = ?", (approval.call_id,))
        call = CallRecord.from_row(cur.fetchone())
        events: list[EventIn] = [
            (
                approval.run_id,
                approval.call_id,
                now,
                actor,
                "approval",
                A.PENDING,
                state,
                json.dumps(
                    {
                        "approval_id": approval.approval_id,
                        "reason": reason,
                        **({"votes": tally} if tally is not None else {}),
                    }
                ),
            )
        ]
        append_events(cur, events, [claim(cur, "approvals", approval.approval_id)])
        detail = json.dumps({"approval_id": approval.approval_id, "reason": reason})
        if call_state is CallState.APPROVED:
            cas_call(cur, call, call_state, now, actor, "approved_at = ?", (now,), detail)
        else:
            self._never_runs(
                cur, approval, call, call_state, now, actor, reason, f"approval {approval.approval_id} {state}"
            )

    @staticmethod
    def _never_runs(
        cur: Any,
        approval: ApprovalRecord,
        call: CallRecord,
        call_state: CallState,
        now: float,
        actor: str,
        reason: str,
        run_note: str,
    ) -> None:
        """The call ends without running: release its idempotency key, reopen the run."""
        cas_call(
            cur,
            call,
            call_state,
            now,
            actor,
            "requested_key = idempotency_key, idempotency_key = NULL, reason = ?, ended_at = ?",
            (reason, now),
            json.dumps({"approval_id": approval.approval_id, "reason": reason}),
        )
        append_events(cur, move_run_if(cur, approval.run_id, RunState.PAUSED, RunState.RUNNING, now, actor, run_note))


def _edit(approval_id: str, decision: str, edited_args: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(hash, canonical JSON) of a reviewer's edited arguments; None when they did not edit."""
    if edited_args is None:
        return None

    def invalid(why: str) -> ApprovalDecisionError:
        return ApprovalDecisionError(
            f"edited arguments refused: {why}", approval_id=approval_id, code="invalid", reason=why
        )

    if decision != "approve":
        raise invalid("only an approval carries edited arguments; a rejection needs a reason only")
    if not isinstance(edited_args, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance] - JSON from outside
        raise invalid("send the arguments as a JSON object")
    try:
        canonical = canonical_json(dict(edited_args))
    except TypeError as exc:
        raise invalid(str(exc)) from exc
    if len(canonical) > _MAX_EDIT_BYTES:
        raise invalid(f"they are over {_MAX_EDIT_BYTES // 1024} KiB")
    return "sha256:" + hashlib.sha256(canonical).hexdigest(), canonical.decode()
