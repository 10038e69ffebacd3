"""The ledger's doors by role: small `Protocol`s, each the part of `Ledger` one kind of code may touch.

`Ledger` is the one implementation of every port (`tests/ledger/test_ports.py` pins it); code types what it holds
as the port it needs, so what a piece of code may touch is a type:

- `CallsPort`: the call path's writes (runs, offers, leases, completion and failure, rollbacks, manual actions);
- `ReadsPort`: reading runs, calls, events and approvals back;
- `ApprovalsPort`: deciding, expiring and withdrawing approvals;
- `ReviewersPort`: reviewers' tokens, sessions and their approval queue;
- `PausesPort`: pauses and staged restarts (the brakes' own state);
- `NoticesPort`: the notifier's cursor and deliveries.

`CallPathLedger` is what a guarded call uses (`guard.runtime.callpath.CallPath.ledger`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from guard.ledger.approvals import DecisionResult, EditGate, RolesNow
    from guard.ledger.audit import AuditReport
    from guard.ledger.drills import DrillRecord
    from guard.ledger.lease_clock import LeaseBeat
    from guard.ledger.moves import RunClose
    from guard.ledger.pauses import Scope
    from guard.ledger.queries import OpenWork
    from guard.ledger.records import (
        ApprovalRecord,
        CallRecord,
        DecisionRecord,
        EventRecord,
        ManualActionRecord,
        NoticeEvent,
        NotificationRecord,
        RunRecord,
    )
    from guard.ledger.signals import Wakes
    from guard.ledger.states import CallState, RunState
    from guard.ledger.store import CallRequest, Offer
    from guard.ledger.tokens import QueuedApproval, TokenRecord

__all__ = [
    "ApprovalsPort",
    "CallPathLedger",
    "CallsPort",
    "NoticesPort",
    "PausesPort",
    "ReadsPort",
    "ReviewersPort",
]


class CallsPort(Protocol):
    """The call path's writes: open and move runs, offer calls, hold leases, record ends, roll back."""

    def open_run(
        self,
        run_id: str,
        team: str,
        *,
        actor: str,
        subject: str | None = None,
        source_event_id: str | None = None,
        pauses: tuple[str, ...] | None = None,
    ) -> RunRecord: ...
    def move_run(
        self,
        run_id: str,
        close: RunClose,
        *,
        actor: str,
        expect: frozenset[RunState] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> RunRecord: ...
    def offer(self, req: CallRequest) -> Offer: ...
    def record_attempt(self, run_id: str, call_id: str, token: int, attempt: int, error: str, actor: str) -> None: ...
    def reclassify(
        self, run_id: str, call_id: str, *, token: int, side_effect: str, was: str | None, rule: str | None, actor: str
    ) -> None: ...
    def record_external_ids(
        self, run_id: str, call_id: str, token: int, external_ids: dict[str, str], actor: str
    ) -> None: ...
    def complete(
        self,
        run_id: str,
        call_id: str,
        *,
        token: int,
        result_json: str,
        external_ids: dict[str, str],
        attempts: int,
        actor: str,
        src: CallState = ...,
        detail: dict[str, Any] | None = None,
        durable: bool = True,
    ) -> None: ...
    def fail(
        self,
        run_id: str,
        call_id: str,
        *,
        token: int,
        state: CallState,
        error: str,
        attempts: int,
        actor: str,
        external_ids: dict[str, str],
        run: RunClose | None = None,
        src: CallState = ...,
    ) -> None: ...
    def heartbeat(self, call_id: str, token: int, ttl: float) -> LeaseBeat: ...
    def release(self, call_id: str, token: int) -> bool: ...
    def close_run(
        self,
        run_id: str,
        close: RunClose,
        *,
        actor: str,
        expect: frozenset[RunState],
        after_changes: RunClose | None = None,
    ) -> tuple[RunRecord, bool]: ...
    def claim(
        self,
        call: CallRecord,
        *,
        worker: str,
        ttl: float,
        actor: str,
        to: CallState | None = None,
        lease_ran_out: bool = False,
    ) -> int | None: ...
    def lease_now(self) -> float: ...
    def calls_in_state(self, states: tuple[CallState, ...], *, run_id: str | None = None) -> list[CallRecord]: ...
    def begin_rollback(self, call: CallRecord, *, actor: str, reason: str) -> bool: ...
    def end_rollback(self, call: CallRecord, *, ok: bool, actor: str, detail: dict[str, Any]) -> None: ...
    def record_manual_action(
        self,
        run_id: str,
        *,
        operator: str,
        action: str,
        note: str,
        call_id: str | None = None,
        run: RunClose | None = None,
    ) -> None: ...


class ReadsPort(Protocol):
    """Runs, calls, events and approvals read back (no writes)."""

    def get_run(self, run_id: str) -> RunRecord | None: ...
    def list_runs(self, *, team: str | None = None, state: str | None = None, limit: int = 50) -> list[RunRecord]: ...
    def get_call(self, call_id: str) -> CallRecord | None: ...
    def calls_of(self, run_id: str) -> list[CallRecord]: ...
    def events_of(self, run_id: str) -> list[EventRecord]: ...
    def last_event_id(self, run_id: str) -> int: ...
    def call_events_after(self, run_id: str, call_id: str, after: int) -> list[EventRecord]: ...
    def get_approval(self, approval_id: str) -> ApprovalRecord | None: ...
    def approval_for_call(self, call_id: str) -> ApprovalRecord | None: ...
    def args_run_with(self, call: CallRecord) -> str: ...
    def list_approvals(
        self, *, state: str | None = "pending", team: str | None = None, limit: int = 100
    ) -> list[ApprovalRecord]: ...
    def decisions_of(self, approval_id: str) -> list[DecisionRecord]: ...
    def manual_actions_of(self, run_id: str) -> list[ManualActionRecord]: ...
    def run_story(self, run: RunRecord) -> dict[str, Any]: ...
    def call_state(self, call_id: str) -> str | None: ...
    def open_work(self) -> OpenWork: ...
    def verify_chain(self, sealed: dict[str, list[tuple[int, str]]] | None = None) -> AuditReport: ...


class ApprovalsPort(Protocol):
    """Deciding, expiring and withdrawing approvals."""

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
    ) -> DecisionResult: ...
    def expire_if_due(self, approval_id: str) -> bool: ...
    def withdraw(self, approval_id: str, *, reason: str, actor: str) -> bool: ...
    def database_time(self) -> float: ...


class ReviewersPort(Protocol):
    """Reviewers' tokens and sessions, the queue of approvals they see, and the requests they signed (replays)."""

    def create_token(self, reviewer: str, *, by: str, label: str | None = None) -> tuple[TokenRecord, str]: ...
    def revoke_token(self, token_id: str, *, by: str) -> TokenRecord: ...
    def list_tokens(self, *, include_revoked: bool = False) -> list[TokenRecord]: ...
    def token_for_secret(self, secret: str) -> TokenRecord | None: ...
    def get_token(self, token_id: str) -> TokenRecord | None: ...
    def approval_queue(self, *, teams: list[str], limit: int = 200) -> list[QueuedApproval]: ...
    def end_session(self, nonce: str, *, until: float) -> None: ...
    def session_ended(self, nonce: str) -> bool: ...
    def first_sighting(self, source: str, signature: str, *, expires_at: float, now: float) -> bool: ...


class PausesPort(Protocol):
    """Pauses (the kill switch), staged restarts and recovery drills: the brakes' own state."""

    def pause(self, scope: Scope, target: str, *, reason: str, by: str, team: str | None = None) -> int: ...
    def unpause(self, scope: Scope, target: str, *, by: str, reason: str, team: str | None = None) -> int: ...
    def pause_at_source(self, team: str, tools: tuple[str, ...] = ()) -> dict[str, Any] | None: ...
    def pause_holding(self, team: str, tool: str, run_id: str) -> str | None: ...
    def pause_events(self, team: str | None = None, *, restarts: bool = False) -> list[EventRecord]: ...
    def active_pauses(self, teams: list[str] | None = None) -> list[dict[str, Any]]: ...
    def start_restart(
        self,
        scope: str,
        target: str,
        *,
        stages: list[int],
        by: str,
        reason: str,
        team: str | None = None,
        quiet: float | None = None,
    ) -> int: ...
    def confirm_restart(self, scope: str, target: str, *, by: str, reason: str, team: str | None = None) -> str: ...
    def restarts(self, teams: list[str] | None = None, *, active_only: bool = False) -> list[dict[str, Any]]: ...
    def restart_events(self, restart_id: int) -> list[dict[str, Any]]: ...
    def record_drill(
        self,
        team: str,
        *,
        by: str,
        state: str,
        started_at: float,
        times: tuple[float | None, float | None, float | None],
        records: int,
        run_id: str | None = None,
        incident_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int: ...
    def drills(self, team: str | None = None, limit: int = 50) -> list[DrillRecord]: ...


class NoticesPort(Protocol):
    """The notifier's cursor over the events, and its deliveries."""

    def notice_cursor(self) -> int: ...
    def notice_events(self, after: int, limit: int = 200) -> tuple[list[NoticeEvent], int]: ...
    def move_notice_cursor(self, to: int) -> None: ...
    def stuck_notices(self, older_than: float, limit: int = 50) -> list[tuple[NotificationRecord, NoticeEvent]]: ...
    def reclaim_notice(self, notice: NotificationRecord) -> bool: ...
    def claim_notice(
        self,
        event: NoticeEvent,
        *,
        target: str,
        approval_id: str | None,
        state: str = "sending",
        error: str | None = None,
    ) -> int | None: ...
    def settle_notice(self, notice_id: int, *, state: str, attempts: int, error: str | None) -> None: ...
    def notices(
        self, *, team: str | None = None, run_id: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[NotificationRecord]: ...


class CallPathLedger(CallsPort, ReadsPort, ApprovalsPort, Protocol):
    """What one guarded call uses: the call path's writes (a run's open checks the pauses at its source), reads,
    approvals (a wait may expire one), and how a waiting agent hears of a decision."""

    url: str
    wakes: Wakes

    def close(self) -> None: ...
