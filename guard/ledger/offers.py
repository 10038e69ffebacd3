"""What the write path takes and gives back: `CallRequest`, everything the ledger needs to record an offered
call, and `Offer`, what `Ledger.offer` found or did."""

from __future__ import annotations

from typing import Literal, NamedTuple

from guard.ledger.field_stops import StopMark
from guard.ledger.records import CallRecord

__all__ = ["CallRequest", "Offer"]


class CallRequest(NamedTuple):
    """Everything the ledger needs to record an offered call. The policy decided `verdict` already.

    Immutable; a NamedTuple rather than a frozen dataclass because one is built on every call and a frozen
    dataclass costs four times as much to construct.
    """

    call_id: str
    run_id: str
    team: str
    tool: str
    args_json: str
    args_hash: str
    idempotency_key: str | None
    verdict: Literal["allow", "approve", "deny"]
    side_effect: str | None
    rule: str | None
    reason: str
    policy_version: str
    actor: str
    approval_roles: tuple[str, ...] = ()
    quorum: int = 1
    expires_after: float = 3600.0
    compensates_call_id: str | None = None
    worker: str = "worker"  # holds the lease on the call once it is started
    lease_ttl: float = 30.0
    # The policy's stop rules for this tool, counted in the run when the call is offered (`_stopped`).
    stop_repeats: int | None = None  # the same call at most this many times in a row
    stop_limits: tuple[tuple[str, int], ...] = ()  # (tool glob, most calls of it per run)
    stop_rates: tuple[tuple[str, int, float], ...] = ()  # (tool glob, most calls, per seconds) for the team
    stop_marks: tuple[StopMark, ...] = ()  # the stop rules on named arguments (guard.ledger.field_stops)
    shadow: str | None = None  # what the policy's rules in `mode: shadow` would have decided, when it differs


class Offer(NamedTuple):
    """What `offer` found or did. `kind`:

    - `started`: the call is committed as started; run the tool now.
    - `awaiting`: the call waits for approval (new, or found waiting from an earlier offer).
    - `completed`: the idempotency key already completed; `record` holds the recorded result. Run nothing.
    - `denied`: refused by the policy or a brake (`brake` names which); recorded as denied.
    """

    kind: Literal["started", "awaiting", "completed", "denied"]
    call_id: str
    seq: int
    reason: str = ""
    brake: str | None = None
    approval_id: str | None = None
    expires_at: float | None = None
    record: CallRecord | None = None
    lease_token: int = 0  # the fencing token every later write on a started call must carry
    edited_args: str | None = None  # `started` after an approval of edited arguments: their canonical JSON
    edited_hash: str | None = None  # ... and the hash the approval binds to
