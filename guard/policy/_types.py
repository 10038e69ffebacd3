# pyright: strict
"""The values a policy hands to the rest of Guard: side-effect classes, verdicts and the decision.

Everything here is immutable and cheap to build: `Policy.classify` returns a `Decision` on every tool call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase

from guard.policy._field_stops import FieldStop
from guard.side_effects import SideEffectClass

__all__ = [
    "NO_STOP",
    "ApprovalRule",
    "Decision",
    "Notify",
    "OnFailure",
    "Owners",
    "RetryRule",
    "SideEffectClass",
    "Slack",
    "StopRules",
    "Verdict",
]


class OnFailure(StrEnum):
    """What the runtime does when the call fails after it started.

    `continue` records the failure and lets the run go on; `compensate` runs the compensations of the
    run's earlier completed calls in reverse order; `halt` stops the run in pending review; `retry` runs this
    call once more when that is provably safe (a repeat-safe class, or the tool's reconcile check found no
    effect in the other system) and halts if it fails again or safety cannot be shown.
    """

    CONTINUE = "continue"
    COMPENSATE = "compensate"
    HALT = "halt"
    RETRY = "retry"


class Verdict(StrEnum):
    """The gate's answer: run it (`allow`), wait for a human (`approve`), or refuse (`deny`)."""

    ALLOW = "allow"
    APPROVE = "approve"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryRule:
    """How often and how fast a failed call is tried again.

    Attributes:
        attempts: Total tries, at least 1; 1 means no retry. Above 1 only for repeat-safe classes.
        backoff_initial: Seconds to wait before the second try.
        backoff_max: Upper bound of any wait, in seconds.
        backoff_multiplier: Factor applied to the wait after each try (1 keeps it constant).
        timeout: Seconds one try may take before it is abandoned, or None for no limit.
    """

    attempts: int = 1
    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    backoff_multiplier: float = 2.0
    timeout: float | None = None


NO_RETRY = RetryRule()


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRule:
    """Who must approve a call, how many of them, and how long the request stays open.

    Attributes:
        roles: A reviewer holding any of these roles may decide.
        quorum: Distinct approving reviewers needed (at least 1).
        expires_after: Seconds after the request after which it expires and nothing runs.
    """

    roles: tuple[str, ...]
    quorum: int = 1
    expires_after: float = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Owners:
    """Who answers for a pause point (policy `owners:` of the team or of a rule): `owner` and `backup`, each a
    reviewer's name or a role. `line`: where the file names them (None for a policy built in code)."""

    owner: str
    backup: str
    line: int | None = None

    @property
    def names(self) -> tuple[str, str]:
        return (self.owner, self.backup)


@dataclass(frozen=True, slots=True, kw_only=True)
class Slack:
    """A team's Slack app (policy `slack:`): the variables holding its signing secret and bot token, and which
    Slack user is which reviewer (`users`: Slack user id -> reviewer name). Secrets stay in the environment."""

    signing_secret_env: str
    bot_token_env: str | None
    users: Mapping[str, str]

    def signing_secret(self) -> bytes | None:
        """The signing secret now (None when its variable is unset: nothing from Slack is accepted)."""
        value = os.environ.get(self.signing_secret_env)
        return value.encode() if value else None

    def bot_token(self) -> str | None:
        """The bot token now, or None (then Reject sends the reviewer to the page for the reason)."""
        return (os.environ.get(self.bot_token_env) or None) if self.bot_token_env else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """A team's webhook: the URL (or the environment variable holding it), the signing key's variable, and
    which events it hears (`approval_waiting`, `run_halted`). Secrets stay in the environment, never in files."""

    webhook: str | None
    webhook_env: str | None
    secret_env: str
    events: frozenset[str]

    def url(self) -> str | None:
        """The webhook URL now (None when its variable is unset)."""
        return self.webhook if self.webhook is not None else os.environ.get(self.webhook_env or "") or None

    def secret(self) -> bytes | None:
        """The signing key now (None when its variable is unset: nothing is sent unsigned)."""
        value = os.environ.get(self.secret_env)
        return value.encode() if value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRules:
    """Brakes on a runaway agent, counted per run in the ledger when a call is offered (policy `stop:`).

    Attributes:
        repeats: The same call (tool and arguments) may be made at most this many times in a row in a run;
            the next one is denied. None: no limit.
        max_calls: (tool name or glob, limit): at most `limit` calls of the matching tools per run.
        rate: (tool name or glob, calls, period in seconds): at most `calls` calls of the matching tools in each
            period (a fixed window of the database clock), across every run of the team.
        fields: The seeds' rules on named arguments (`guard.policy._field_stops.FieldStop`): far more records than
            expected, duplicate messages, blank fields written.
    """

    repeats: int | None = None
    max_calls: tuple[tuple[str, int], ...] = ()
    rate: tuple[tuple[str, int, float], ...] = ()
    fields: tuple[FieldStop, ...] = ()  # rules on named arguments: records, duplicates, blank fields

    def for_tool(self, tool: str) -> StopRules:
        """The rules that count a call of `tool` (the limits whose pattern names it)."""
        return StopRules(
            repeats=self.repeats,
            max_calls=tuple((glob, n) for glob, n in self.max_calls if fnmatchcase(tool, glob)),
            rate=tuple(rule for rule in self.rate if fnmatchcase(tool, rule[0])),
            fields=tuple(rule for rule in self.fields if rule.counts(tool)),
        )


NO_STOP = StopRules()


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What the policy says about one tool call, with the reason in words.

    Attributes:
        team: The team whose policy decided.
        tool: The tool name as called.
        verdict: allow, approve (wait for a human) or deny.
        side_effect: Class of the winning rule; for a deny, the class of the strictest non-deny rule that
            matched, or None when none did (no rule matched, or the policy could not be loaded).
        rule: Name of the rule that decided, or None when no rule matched.
        reason: A sentence saying why: the rule and condition, or what to fix.
        approval: The gate, set exactly when `verdict` is APPROVE.
        retry: Retry rule of the winning rule; one attempt for denials and non-repeat-safe classes.
        on_failure: What to do when the call fails after starting.
        secret_fields: Argument names to redact (policy-level plus the secrets of every rule naming the tool).
        policy_version: `sha256:<16 hex>` of the policy file, or "" when no policy could be loaded.
        matched: Names of all rules whose tool and conditions matched, in file order.
        stop: The policy's stop rules that count this tool (checked against the run in the ledger).
        shadow: When rules in `mode: shadow` name the tool and would change the verdict or the class: what they
            would have decided, in words (`approve, compensable, by rule X: ...`); None otherwise. Not enforced.
    """

    team: str
    tool: str
    verdict: Verdict
    side_effect: SideEffectClass | None
    rule: str | None
    reason: str
    approval: ApprovalRule | None
    retry: RetryRule
    on_failure: OnFailure
    secret_fields: frozenset[str]
    policy_version: str
    matched: tuple[str, ...]
    stop: StopRules = NO_STOP
    shadow: str | None = None  # what the rules in `mode: shadow` would have decided, when that differs

    @property
    def allowed(self) -> bool:
        """True when the call may run without a human."""
        return self.verdict is Verdict.ALLOW
