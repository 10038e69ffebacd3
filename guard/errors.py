"""Every error Guard raises, under one root.

```
GuardError
├── GuardSignal                 control flow, carries data; not a failure
│   └── ApprovalPending         the call waits for a human decision (deferred mode)
├── ConfigurationError          the developer or the policy owner must fix something
│   ├── PolicyError             a policy file is invalid: file, line, field, reason
│   ├── LedgerNotReady          the database is unmigrated or at another revision
│   ├── GuardUsageError         the API was used wrongly (a call outside a run, ...)
│   ├── SecretKeyMissing        arguments hold secrets and no key to hash them is configured
│   └── DrillFailed             a recovery drill did not reach clean state: the step (pause, radius, clean)
├── CallOutcomeError            a guarded call did not complete; carries run, call, tool, state
│   ├── CallDenied              no rule allows it, a deny rule, a brake, a paused team/tool/run
│   │   └── ArgumentsRefused    arguments too deep, too large, or not exact JSON (recorded as denied)
│   ├── CallRejected            a reviewer rejected it (reason)
│   ├── ApprovalExpired         nobody decided before the expiry
│   ├── ApprovalTimeout         a blocking wait ran out; the approval still stands
│   ├── RunNotRunning           the run is halted, pending review or finished
│   ├── TeamPaused              the team is paused: no new run opens (names the pause, its reason, owners)
│   │   └── ToolPaused          a tool the new run declares it uses is paused: the run does not open
│   ├── IdempotencyConflict     the same idempotency key with other arguments
│   ├── CallFailed              the tool raised; the error is recorded
│   └── CallInDoubt             the outcome is unknown (timeout after a write); never re-run blindly
├── OutcomeUnknown              raised BY a tool (an adapter): its request went out, no answer came back
└── LedgerError                 the ledger could not do what was asked
    ├── LedgerUnavailable       the database failed (translated from the driver error)
    │   └── LedgerBusy          every connection of this process's pool stayed in use past the pool timeout
    ├── IllegalTransition       a state change the transition table refuses
    │   └── LeaseLost           a write on a call another worker took over (fenced: nothing written)
    └── ApprovalDecisionError   a decision that is not allowed (role, self-approval, decided, expired)
```

Every error pickles with its fields (`__reduce__`), so it crosses process boundaries intact.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApprovalDecisionError",
    "ApprovalExpired",
    "ApprovalPending",
    "ApprovalTimeout",
    "ArgumentsRefused",
    "CallDenied",
    "CallFailed",
    "CallInDoubt",
    "CallOutcomeError",
    "CallRejected",
    "ConfigurationError",
    "DrillFailed",
    "GuardError",
    "GuardSignal",
    "GuardUsageError",
    "IdempotencyConflict",
    "IllegalTransition",
    "LeaseLost",
    "LedgerBusy",
    "LedgerError",
    "LedgerNotReady",
    "LedgerUnavailable",
    "OutcomeUnknown",
    "PolicyError",
    "RunNotRunning",
    "SecretKeyMissing",
    "TeamPaused",
    "ToolPaused",
]


class GuardError(Exception):
    """Root of every error Guard raises. Fields are keyword arguments kept on the instance (and in `fields`)."""

    message: str
    fields: dict[str, Any]

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))


def _rebuild(cls: type[GuardError], message: str, fields: dict[str, Any]) -> GuardError:
    err = cls.__new__(cls)
    GuardError.__init__(err, message, **fields)
    return err


class GuardSignal(GuardError):
    """Control flow that carries data. Not a failure: the caller is expected to handle it."""


class ApprovalPending(GuardSignal):
    """The call waits for a human decision. Resume the run later with the same call.

    Fields: run_id, call_id, tool, approval_id, expires_at.
    """

    run_id: str
    call_id: str
    tool: str
    approval_id: str
    expires_at: float


class ConfigurationError(GuardError):
    """Something the developer or policy owner must fix before Guard can run."""


class PolicyError(ConfigurationError):
    """A policy file is invalid. `str(err)` reads `file:line: field: reason`.

    Fields: file, line (1-based, or None when unknown), field (dotted path, or "" for the document), reason.
    """

    file: str
    line: int | None
    field: str
    reason: str

    def __init__(
        self, message: str | None = None, *, file: str, line: int | None, field: str, reason: str, **extra: Any
    ) -> None:
        where = f"{file}:{line}" if line is not None else file
        text = message or f"{where}: {field or '<document>'}: {reason}"
        super().__init__(text, file=file, line=line, field=field, reason=reason, **extra)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))


class LedgerNotReady(ConfigurationError):
    """The database is not migrated to the revision this Guard needs (or is not a usable ledger at all).
    Run `guard db upgrade`. Fields: url; revision and needed when the schema is at another revision."""

    url: str
    revision: str | None = None
    needed: str | None = None


class GuardUsageError(ConfigurationError):
    """The API was used in a way that cannot work; the message says what to do instead."""


class SecretKeyMissing(ConfigurationError):
    """A call's arguments hold secrets, and no key to hash them is configured (nothing was recorded).

    The hash of such arguments is keyed so that nobody who sees it can guess a secret from it; every worker on
    one ledger needs the same key. Set `GUARD_SECRET_KEY` or `GUARD_SECRET_KEY_FILE`, or pass
    `Guard(secret_key=...)`. A SQLite ledger file gets one made beside it on first use. Fields: tool.
    """

    tool: str


class DrillFailed(ConfigurationError):
    """A recovery drill (`guard drill`) did not reach clean state: the team's brakes never paused the bad run, or
    its records could not all be undone. Fields: drill (its id in the ledger, where it is kept as failed), step
    (pause, radius or clean)."""

    drill: int
    step: str


class CallOutcomeError(GuardError):
    """A guarded call did not complete. Fields: run_id, call_id, tool, state (and more per subclass)."""

    run_id: str
    call_id: str | None
    tool: str | None
    state: str


class CallDenied(CallOutcomeError):
    """The policy or a brake refused the call before anything ran. Fields add: reason, rule."""

    reason: str
    rule: str | None


class ArgumentsRefused(CallDenied):
    """The arguments are nested too deep, too large, or not exact JSON: the call is recorded as denied, with a
    placeholder for arguments over a limit. The reason names where and what kind of value, never the value.

    Fields add: limit ("depth", "size" or "json").
    """

    limit: str


class CallRejected(CallOutcomeError):
    """A reviewer rejected the call. Fields add: reason."""

    reason: str


class ApprovalExpired(CallOutcomeError):
    """Nobody decided before the approval expired. Nothing ran."""


class ApprovalTimeout(CallOutcomeError):
    """A blocking wait for approval ran out of time. The approval still stands; call again to resume."""

    approval_id: str


class RunNotRunning(CallOutcomeError):
    """The run is halted, pending review or finished: no new call may start in it. Fields add: reason."""

    reason: str


class TeamPaused(CallOutcomeError):
    """The team is paused (kill switch): `guard.run(...)` opens no new run until the pause is lifted, so
    schedules and webhook handlers stop feeding work at the source. Nothing was recorded for the run.

    Fields add: team, pause_id, reason, paused_by, owners (the team's owner and backup from the policy, or empty).
    `state` is "paused"; call_id and tool are None.
    """

    team: str
    pause_id: int
    reason: str
    paused_by: str
    owners: list[str]


class ToolPaused(TeamPaused):
    """A tool the new run declares it will use (`guard.run(team, uses=[...])`) is paused: the run does not open,
    so a job that would only be denied at its first call of that tool stops at the source instead. A subclass of
    TeamPaused, so a handler that stops feeding a paused team stops for this too. Nothing was recorded.

    Fields add: tool (the declared tool the pause covers), pattern (the paused tool or glob); owners are those of
    the rules naming the tool, else the team's.
    """

    pattern: str


class IdempotencyConflict(CallOutcomeError):
    """The idempotency key was used before with other arguments. Fields add: key, recorded_hash."""

    key: str | None
    recorded_hash: str


class CallFailed(CallOutcomeError):
    """The tool raised. The error is recorded; the original exception is the `__cause__`.

    Fields add: error (type and message, secrets scrubbed), on_failure (what the policy did to the run).
    """

    error: str
    on_failure: str


class CallInDoubt(CallOutcomeError):
    """The outcome is unknown (a timeout after the tool started), or the call is in flight in another worker
    (`in_flight` True, `held_by` names it, `lease_expires_at` says until when its lease holds it unless
    renewed). The call is never re-run blindly."""

    error: str = ""
    in_flight: bool = False
    held_by: str | None = None
    lease_expires_at: float | None = None


class LedgerError(GuardError):
    """The ledger could not do what was asked."""


class LedgerUnavailable(LedgerError):
    """The database failed or cannot be reached. Nothing was decided; the guard fails closed."""


class LedgerBusy(LedgerUnavailable):
    """Every connection of this process's ledger pool stayed in use for the pool's timeout: nothing was
    recorded, the call that needed one was refused (fail closed). Raise the pool size
    (`GUARD_DB_POOL_SIZE`, `Guard(db_pool_size=...)`) or the database's `max_connections`, or run fewer threads.

    Fields: url, database (without a password), size, overflow, timeout (seconds waited).
    """

    size: int
    overflow: int
    timeout: float


class IllegalTransition(LedgerError):
    """A state change the transition table refuses, or a compare-and-set that lost a race.

    Fields: entity ("call" or "run"), id, from_state, to_state.
    """

    entity: str
    id: str
    from_state: str | None
    to_state: str


class LeaseLost(IllegalTransition):
    """A worker wrote on a call it no longer holds: another worker took the call over (this one's lease ran
    out while it was paused, cut off or presumed dead), or the call was settled already. Nothing was written.

    The call, and the run it belongs to, are the new owner's to carry on: a worker that lost a lease in a run
    leaves that run as it stands when its block ends. Fields as IllegalTransition (entity "lease").
    """


class ApprovalDecisionError(LedgerError):
    """A decision that may not be made. Fields: approval_id, reason, and `code`:
    "not_found", "forbidden", "self_approval", "already_decided", "expired", "invalid", "denied" (the policy
    refuses edited arguments)."""

    approval_id: str
    code: str
    reason: str


class OutcomeUnknown(GuardError):  # named for what the tool reports, like CallInDoubt
    """Raised by a tool (an adapter's forwarding function) that cannot tell whether its effect happened: the
    request went out and no answer came back (a lost response, a server that died mid-call, an upstream
    timeout).

    Guard treats it like an attempt past its timeout: the tool's reconcile check looks the call up (found: the
    call is `completed` with what was found); otherwise a call that is not a `read` becomes `in_doubt`, never
    `failed`, and is never re-run blindly. A "not found" right after it proves nothing (the request may still
    land): the call stays in doubt until recovery asks again.
    """
