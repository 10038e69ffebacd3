# pyright: strict
"""The policy file format as pydantic models: the one validated shape, and the source of the JSON Schema.

Models are strict (no text-to-number coercion) and refuse unknown keys with the list of keys allowed
there. They describe shape only; rules that span fields (an irreversible rule needs an approval, a quorum
needs enough reviewers, ...) are checked when the policy is compiled.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from guard.policy._types import OnFailure, SideEffectClass
from guard.policy._values import number_operand, parse_duration, scalar_list, scalar_operand

__all__ = [
    "ApprovalSpec",
    "BlanksStopSpec",
    "CaseSpec",
    "CasesFile",
    "ConditionSpec",
    "DrillSpec",
    "DuplicatesStopSpec",
    "OwnersSpec",
    "PolicySpec",
    "RecordsStopSpec",
    "RetrySpec",
    "ReviewerSpec",
    "RuleSpec",
    "StopSpec",
    "SystemSpec",
]

_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)$", "examples": ["30s", "5m", "1h", "2d"]},
        {"type": "number", "exclusiveMinimum": 0},
    ],
    "description": "A duration: 30s, 5m, 1h, 2d, 250ms, or a number of seconds.",
}
_SCALAR_SCHEMA = {"type": ["string", "number", "boolean"]}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
Number = Annotated[Any, AfterValidator(number_operand), WithJsonSchema({"type": "number"})]
Scalar = Annotated[Any, AfterValidator(scalar_operand), WithJsonSchema(_SCALAR_SCHEMA)]
ScalarList = Annotated[
    Any,
    AfterValidator(scalar_list),
    WithJsonSchema({"type": "array", "items": _SCALAR_SCHEMA, "minItems": 1}),
]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
ToolPattern = Annotated[str, StringConstraints(pattern=r"^\S+$", max_length=200)]


class _Spec(BaseModel):
    """Base of every model: strict types, frozen, unknown keys refused with the allowed ones named."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)
    _keys: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = {f.alias or name for name, f in cls.model_fields.items()}
            for key in data:  # pyright: ignore[reportUnknownVariableType]
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key '{key}': allowed here are {allowed}",
                        {"key": key, "allowed": ", ".join(sorted(allowed))},
                    )
                if data[key] is None:
                    raise PydanticCustomError(
                        "null_value", "'{key}' is null: give it a value or remove the key", {"key": key}
                    )
        return data  # pyright: ignore[reportUnknownVariableType]


class BackoffSpec(_Spec):
    """Wait between tries: starts at `initial`, multiplied by `multiplier` after each, capped at `max`."""

    initial: Duration = 0.1
    max: Duration = 2.0
    multiplier: Annotated[float, Field(ge=1, le=10, allow_inf_nan=False)] = 2.0


class RetrySpec(_Spec):
    """Retry of a failed call. `attempts` counts every try (1 = no retry); only repeat-safe classes retry."""

    attempts: Annotated[int, Field(ge=1, le=20)] | None = None
    backoff: BackoffSpec | None = None
    timeout: Duration | None = Field(default=None, description="Seconds one try may take.")


class ApprovalSpec(_Spec):
    """A human gate: `quorum` reviewers holding any of `roles` must approve before `expires_after`."""

    roles: Annotated[list[Name], Field(min_length=1)]
    quorum: Annotated[int, Field(ge=1, le=100)] = 1
    expires_after: Duration | None = None


class DefaultApprovalSpec(_Spec):
    """Policy-wide defaults of approvals."""

    expires_after: Duration | None = None


class DefaultsSpec(_Spec):
    """Policy-wide defaults; per-class defaults are built in."""

    approval: DefaultApprovalSpec | None = None
    retry: RetrySpec | None = None


class ConditionSpec(_Spec):
    """Comparators on one argument; all must hold. A wrong-typed or missing argument is indeterminate."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None
    in_: ScalarList | None = Field(default=None, alias="in")
    not_in: ScalarList | None = None
    glob: Annotated[str, StringConstraints(min_length=1)] | None = None
    exists: bool | None = None


class OwnersSpec(_Spec):
    """Who answers for a pause point: an `owner` and a `backup`, each a reviewer's name or a role of `reviewers:`.

    They are told when something pauses or a stop rule trips, and may pause and unpause alone (as may anyone
    holding the `operator` role)."""

    owner: Name
    backup: Name


Mode = Annotated[str, StringConstraints(pattern=r"^(enforce|shadow)$")]


class RuleSpec(_Spec):
    """One rule: tools (names or globs) and optional conditions -> a class and its gate, or a deny."""

    name: Name
    description: Text | None = None
    tools: Annotated[list[ToolPattern], Field(min_length=1)]
    when: dict[Annotated[str, StringConstraints(pattern=r"^[^.\s]+(\.[^.\s]+)*$")], ConditionSpec] | None = None
    class_: Annotated[SideEffectClass, Field(strict=False)] | None = Field(default=None, alias="class")
    approval: ApprovalSpec | None = None
    retry: RetrySpec | None = None
    on_failure: Annotated[OnFailure, Field(strict=False)] | None = None
    secrets: list[Name] = Field(default_factory=lambda: [])
    deny: Text | None = Field(default=None, description="Refuse the call; the text tells the agent why.")
    owners: OwnersSpec | None = Field(
        default=None,
        description="Who answers for pauses of this rule's tools, where it differs from the team's `owners:`.",
    )
    mode: Mode = Field(
        default="enforce",
        description="shadow: the rule decides nothing; each call records what it "
        "would have decided (an event and a metric).",
    )


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=100)]
Event = Annotated[str, StringConstraints(pattern=r"^(approval_waiting|run_halted|paused|stop_tripped|restart)$")]


class NotifySpec(_Spec):
    """Where the team's channel hears about calls waiting for approval, runs that halt, pauses set or lifted, stop
    rules that trip (these two naming the owners) and each step of a staged restart (`restart`: a stage opened,
    passed, failed and re-paused, the last one done)."""

    webhook: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2000)] | None = Field(
        default=None, description="The webhook URL (Slack-compatible). Prefer webhook_env: such URLs are secrets."
    )
    webhook_env: EnvName | None = Field(default=None, description="The environment variable holding the URL.")
    secret_env: EnvName = Field(description="The environment variable holding the HMAC-SHA256 signing key.")
    events: Annotated[list[Event], Field(min_length=1)] = Field(
        default_factory=lambda: ["approval_waiting", "run_halted", "paused", "stop_tripped", "restart"]
    )

    @model_validator(mode="after")
    def _one_url(self) -> NotifySpec:
        if (self.webhook is None) == (self.webhook_env is None):
            raise PydanticCustomError("webhook", "give exactly one of webhook or webhook_env")
        return self


_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,30}$")


def _slack_user(value: str) -> str:
    if not _SLACK_USER.match(value):
        raise PydanticCustomError(
            "slack_user",
            "'{value}' is not a Slack user id: write the member ID from their Slack profile (U or W, then capital "
            "letters and digits, e.g. U024BE7LH)",
            {"value": value},
        )
    return value


SlackUser = Annotated[
    str, AfterValidator(_slack_user), WithJsonSchema({"type": "string", "pattern": _SLACK_USER.pattern})
]


class SlackSpec(_Spec):
    """Approve and reject from Slack: the team's Slack app posts button presses to `guard serve`
    (`/slack/actions`), signed with its signing secret. Which Slack user is which reviewer is said in
    `reviewers:` (`sam: {roles: [support], slack: U024BE7LH}`)."""

    signing_secret_env: EnvName = Field(
        description="The environment variable holding the Slack app's signing secret (never the secret itself)."
    )
    bot_token_env: EnvName | None = Field(
        default=None,
        description="The environment variable holding the bot "
        "token that opens the reject-reason dialog (views.open); without it "
        "Reject links to the page.",
    )
    # The place Slack ids were written before they moved into `reviewers:`. Accepted by the shape only to be
    # refused at compile time with the rewrite spelled out (guard.policy._load); not in the published schema.
    reviewers: SkipJsonSchema[dict[str, Any] | None] = None


class ReviewerSpec(_Spec):
    """A reviewer: the roles they hold and, to decide from Slack, their Slack user id. `sam: [support]` is short
    for `sam: {roles: [support]}`."""

    roles: Annotated[list[Name], Field(min_length=1)]
    slack: SlackUser | None = Field(
        default=None, description="Their Slack user id (U... or W...): a press of theirs in Slack is theirs."
    )


def _short_reviewer(value: object) -> object:
    if isinstance(value, list):
        return {"roles": cast(list[object], value)}
    if isinstance(value, dict):
        return value  # pyright: ignore[reportUnknownVariableType]  (validated as a ReviewerSpec next)
    raise PydanticCustomError(
        "reviewer",
        "a reviewer is a list of their roles ([support]) or {roles: [support], slack: U024BE7LH}",
    )


Reviewer = Annotated[
    ReviewerSpec,
    BeforeValidator(_short_reviewer, json_schema_input_type=Annotated[list[Name], Field(min_length=1)] | ReviewerSpec),
]


class RateSpec(_Spec):
    """At most `calls` calls of the matching tools in each period of `per`, across every run of the team."""

    calls: Annotated[int, Field(ge=1, le=1_000_000)]
    per: Duration


FieldName = Annotated[str, StringConstraints(pattern=r"^[^.\s]+(\.[^.\s]+)*$", max_length=200)]
OnTrip = Annotated[str, StringConstraints(pattern=r"^(deny|pause)$")]
PauseScope = Annotated[str, StringConstraints(pattern=r"^(team|tool)$")]


class _FieldStopSpec(_Spec):
    """What every stop rule on named arguments shares: its name, the tools it counts, and what a trip does."""

    name: Name
    tools: Annotated[list[ToolPattern], Field(min_length=1)]
    on_trip: OnTrip = Field(
        default="deny",
        description="deny: refuse the call; pause: refuse it and pause "
        "the team or the tool (`pause:`) until an owner lifts it.",
    )
    pause: PauseScope = Field(default="team", description="What `on_trip: pause` pauses: the team or the tool.")
    mode: Mode = Field(
        default="enforce",
        description="shadow: record what the rule would have decided (an event "
        "and a metric) without refusing anything.",
    )


class RecordsStopSpec(_FieldStopSpec):
    """Far more records than expected: at most `max` distinct values of `field` per run, or per window of `per`
    across the team's runs."""

    field: FieldName
    max: Annotated[int, Field(ge=1, le=1_000_000)]
    per: Annotated[str, StringConstraints(pattern=r"^run$")] | Duration = Field(
        default="run", description="`run`, or a duration: a fixed window of the database clock for the whole team."
    )


class DuplicatesStopSpec(_FieldStopSpec):
    """Duplicate messages: at most `max` calls of one tool with the same values of `fields` (the recipient, the
    invoice, ...) within `within`, across the team's runs."""

    fields: Annotated[list[FieldName], Field(min_length=1, max_length=20)]
    within: Duration
    max: Annotated[int, Field(ge=1, le=1_000_000)] = 1


class BlanksStopSpec(_FieldStopSpec):
    """Blank fields written: a call whose named fields are present and empty, null or only whitespace."""

    fields: Annotated[list[FieldName], Field(min_length=1, max_length=100)]


class StopSpec(_Spec):
    """Brakes on a runaway agent: a call over a limit is denied (and recorded) before it starts."""

    repeats: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None, description="The same call (tool and arguments) at most this many times in a row in a run."
    )
    max_calls: dict[ToolPattern, Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default_factory=lambda: {}, description="Tool name or glob -> at most this many calls of it per run."
    )
    rate: dict[ToolPattern, RateSpec] = Field(
        default_factory=lambda: {}, description="Tool name or glob -> at most `calls` per `per` for the whole team."
    )
    records: list[RecordsStopSpec] = Field(default_factory=lambda: [])
    duplicates: list[DuplicatesStopSpec] = Field(default_factory=lambda: [])
    blank_fields: list[BlanksStopSpec] = Field(default_factory=lambda: [])


class SystemSpec(_Spec):
    """Another system the team's tools write to (billing, CRM, email): the timeout and retries all its tools share.
    What it sets applies to every tool it names, whichever rule decides the call."""

    tools: Annotated[list[ToolPattern], Field(min_length=1)]
    description: Text | None = None
    timeout: Duration | None = Field(default=None, description="Seconds one try of any of its tools may take.")
    retry: RetrySpec | None = Field(
        default=None,
        description="Attempts (for its repeat-safe tools: the others never retry) and backoff; the timeout is "
        "`timeout:` on the system.",
    )


class DrillSpec(_Spec):
    """How the team drills its recovery (`guard drill --team T`): the stand-in tools a scripted bad run calls."""

    stand_ins: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$", max_length=200)
    ] = Field(
        description="module:function taking the drill's Guard: it registers stand-in tools (each with its "
        "compensation) and returns the bad run, a function of no arguments calling them."
    )


class PolicySpec(_Spec):
    """A team's policy file, `policies/<team>.yaml`."""

    model_config = ConfigDict(title="Guard team policy", json_schema_extra={"additionalProperties": False})

    schema_: str | None = Field(default=None, alias="$schema")
    team: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
    description: Text | None = None
    secrets: list[Name] = Field(default_factory=lambda: [])
    reviewers: dict[Name, Reviewer] = Field(
        default_factory=lambda: {}, description="Reviewer name -> their roles, or {roles: [...], slack: U...}."
    )
    owners: OwnersSpec | None = Field(default=None, description="Who answers for the team's pauses and stop rules.")
    defaults: DefaultsSpec | None = None
    notify: NotifySpec | None = None
    slack: SlackSpec | None = None
    stop: StopSpec | None = None
    drill: DrillSpec | None = Field(default=None, description="The team's recovery drill (`guard drill`).")
    systems: dict[Name, SystemSpec] = Field(
        default_factory=lambda: {},
        description="System name -> the tools it holds and the timeout and retries they share.",
    )
    rules: Annotated[list[RuleSpec], Field(min_length=1)]

    def roles(self) -> dict[str, list[str]]:
        """Reviewer name -> the roles they hold, in file order."""
        return {name: reviewer.roles for name, reviewer in self.reviewers.items()}


class CaseSpec(_Spec):
    """One expected decision: a call and the verdict (and optionally class and rule) it must get."""

    name: Text | None = None
    tool: Annotated[str, StringConstraints(min_length=1)]
    args: dict[str, Any] | None = None
    args_json: str | None = Field(default=None, description="Arguments as JSON text (JSON number rules).")
    expect: Annotated[str, StringConstraints(pattern=r"^(allow|approve|deny)$")]
    class_: Annotated[SideEffectClass, Field(strict=False)] | None = Field(default=None, alias="class")
    rule: str | None = None


class CasesFile(_Spec):
    """`policies/<team>.cases.yaml`: calls and the decisions the team's policy must give them."""

    cases: Annotated[list[CaseSpec], Field(min_length=1)]
