"""What is in flight in this task or thread: the current run and the current call.

Both live in context variables, so a guarded tool finds its run without being passed it, and a running tool
can report an external id (`report_external_id`) the moment it has one.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from guard.errors import GuardUsageError
from guard.redaction import scrub_text

if TYPE_CHECKING:
    from guard.ledger import CallsPort

__all__ = ["CallScope", "RunScope", "current_call", "current_run", "report_external_id"]


@dataclass(frozen=True, slots=True)
class RunScope:
    """The run a block of agent code works in (set by `Guard.run`).

    `lost` names the calls of this run whose lease this worker lost (`LeaseLost`): another worker took them
    over, so this one is stale for the run and leaves it as it stands when its block ends.
    """

    run_id: str
    team: str
    actor: str
    # Text forms of the secret values its calls were given (in memory only): the run's own error summary is
    # scrubbed of them, since an agent's exception may quote one.
    secrets: set[str] = field(default_factory=set[str], compare=False)
    lost: set[str] = field(default_factory=set[str], compare=False)


@dataclass(slots=True)
class CallScope:
    """The call whose tool is running now. `external_ids` gathers what the tool reported so far."""

    ledger: CallsPort
    run_id: str
    call_id: str
    tool: str
    actor: str
    idempotency_key: str | None  # pass it on to the other system (e.g. an Idempotency-Key header)
    lease_token: int  # fencing: every write on this call carries it
    external_ids: dict[str, str] = field(default_factory=dict[str, str])
    secrets: tuple[str, ...] = ()  # text forms of the call's secret values: cut out of every reported id


_run: ContextVar[RunScope | None] = ContextVar("guard_run", default=None)
_call: ContextVar[CallScope | None] = ContextVar("guard_call", default=None)


def current_run() -> RunScope | None:
    return _run.get()


def current_call() -> CallScope | None:
    """The guarded call whose tool is running in this context (its call id and idempotency key), or None."""
    return _call.get()


def report_external_id(kind: str, value: str) -> None:
    """Record an id the running tool just got from another system (charge, contact, message).

    Committed to the ledger before this returns, so a crash right after the effect still leaves the id
    in the record. Call it from inside a guarded tool; elsewhere it raises GuardUsageError.
    """
    scope = _call.get()
    if scope is None:
        raise GuardUsageError("report_external_id() must be called from inside a guarded tool")
    scope.external_ids[kind] = scrub_text(str(value), scope.secrets)
    scope.ledger.record_external_ids(
        scope.run_id, scope.call_id, scope.lease_token, dict(scope.external_ids), scope.actor
    )


RUN_VAR = _run
CALL_VAR = _call
