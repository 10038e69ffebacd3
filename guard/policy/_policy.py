# pyright: strict
"""`Policy`: one team's compiled rules and the pure, fast `classify` that runs on every tool call.

Classification: take the rules that name the tool (exact names through a dict, then precompiled globs;
the list is cached per tool name), evaluate their conditions, then decide in this order:

1. any indeterminate condition (wrong type, missing argument) -> DENY, naming the argument;
2. any matching deny rule -> DENY with its reason;
3. the strictest matching rule wins, whatever the file order: class irreversible > compensable >
   idempotent > read, then approval over auto, then the larger quorum, then the first in the file;
4. nothing matched -> DENY (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from guard.identity import identity
from guard.policy._conditions import evaluate_all
from guard.policy._rules import RETRY_FIELDS, Rule
from guard.policy._systems import System
from guard.policy._types import NO_RETRY, NO_STOP, Decision, Notify, OnFailure, Owners, Slack, StopRules, Verdict
from guard.policy._values import format_duration

__all__ = ["Policy", "RuleTrace"]

_CACHE_LIMIT = 4096  # tool names are chosen by the agent: bound what we remember


@dataclass(slots=True)
class _Plan:
    """What is known about one tool name before looking at arguments."""

    candidates: tuple[Rule, ...]
    secrets: frozenset[str]
    stop: StopRules
    system: System | None
    decisions: dict[tuple[int, ...], Decision] = field(default_factory=lambda: {})
    fixed: Decision | None = None


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule fared for a call (for `explain`): outcome is "matched", "conditions failed",
    "indeterminate" or "tool not named"; detail says which condition."""

    rule: str
    line: int | None
    outcome: str
    detail: str


class Policy:
    """A team's validated, compiled policy. Immutable; safe to share between threads.

    Build one with `load_policy` or `policy_from_text`. `classify` does no I/O and no validation.
    """

    __slots__ = (
        "_default_retry",
        "_description",
        "_drill",
        "_exact",
        "_globs",
        "_identities",
        "_notify",
        "_owners",
        "_plans",
        "_reviewer_lines",
        "_reviewers",
        "_rules",
        "_secrets",
        "_slack",
        "_source",
        "_stop",
        "_systems",
        "_team",
        "_version",
    )

    def __init__(
        self,
        *,
        team: str,
        version: str,
        source: str,
        description: str,
        rules: tuple[Rule, ...],
        reviewers: Mapping[str, frozenset[str]],
        secret_fields: frozenset[str],
        notify: Notify | None = None,
        stop: StopRules = NO_STOP,
        reviewer_lines: Mapping[str, int | None] | None = None,
        owners: Owners | None = None,
        slack: Slack | None = None,
        systems: tuple[System, ...] = (),
        default_retry: tuple[tuple[str, int | None], ...] = (),
        drill: str | None = None,
    ) -> None:
        self._drill = drill
        self._systems = systems
        self._default_retry = default_retry
        self._slack = slack
        self._owners = owners
        self._notify = notify
        self._stop = stop
        self._team = team
        self._version = version
        self._source = source
        self._description = description
        self._rules = rules
        self._reviewers: Mapping[str, frozenset[str]] = dict(reviewers)
        self._reviewer_lines: Mapping[str, int | None] = dict(reviewer_lines or {})
        # A name from a token or a request is looked up as the person it means (`guard.identity`).
        self._identities: Mapping[str, frozenset[str]] = {identity(name): roles for name, roles in reviewers.items()}
        self._secrets = secret_fields
        exact: dict[str, list[Rule]] = {}
        for rule in rules:
            for name in rule.exact:
                exact.setdefault(name, []).append(rule)
        self._exact = {name: tuple(found) for name, found in exact.items()}
        self._globs = tuple(rule for rule in rules if rule.globs)
        self._plans: dict[str, _Plan] = {}

    @property
    def team(self) -> str:
        """The team this policy belongs to (the file stem)."""
        return self._team

    @property
    def version(self) -> str:
        """`sha256:` + the first 16 hex digits of the SHA-256 of the file's bytes."""
        return self._version

    @property
    def source(self) -> str:
        """Where the policy was read from (the path as given)."""
        return self._source

    @property
    def description(self) -> str:
        """The file's description, or ''."""
        return self._description

    @property
    def reviewers(self) -> Mapping[str, frozenset[str]]:
        """Reviewer name -> the roles they hold."""
        return self._reviewers

    def reviewer_line(self, name: str) -> int | None:
        """The line of the file where `reviewers:` names `name` (None when unknown: a policy built in code)."""
        return self._reviewer_lines.get(name)

    @property
    def secret_fields(self) -> frozenset[str]:
        """Argument names redacted for every tool of this team."""
        return self._secrets

    @property
    def notify(self) -> Notify | None:
        """Where the team's channel is told of waiting calls and halted runs; None when nowhere."""
        return self._notify

    @property
    def slack(self) -> Slack | None:
        """The team's Slack app for deciding from Slack (policy `slack:`); None when the team has none."""
        return self._slack

    @property
    def stop(self) -> StopRules:
        """The brakes on a runaway agent (policy `stop:`); no limits when the file sets none."""
        return self._stop

    @property
    def drill_stand_ins(self) -> str | None:
        """The team's drill stand-ins as module:function (policy `drill:`), or None when it declares none."""
        return self._drill

    @property
    def systems(self) -> tuple[System, ...]:
        """The systems the team's tools write to (policy `systems:`), in file order."""
        return self._systems

    def system_of(self, tool: str) -> str | None:
        """The name of the system `tool` belongs to (policy `systems:`), or None when no system names it."""
        plan = self._plans.get(tool)
        system = plan.system if plan is not None else self._system_for(tool)
        return system.name if system is not None else None

    def _system_for(self, tool: str) -> System | None:
        return next((system for system in self._systems if system.names_tool(tool)), None)

    def retry_sources(self, decision: Decision) -> dict[str, str]:
        """Where each retry value of `decision` came from, in words (`system billing (line 7)`, `rule crm-reads
        (line 30)`, `defaults (line 4)`, `built in (class read)`): for `guard policy explain`."""
        if decision.rule is None or decision.side_effect is None or decision.verdict is Verdict.DENY:
            return dict.fromkeys(RETRY_FIELDS, "denied: never runs")
        rule = next(r for r in self._rules if r.name == decision.rule)
        system = self._system_for(decision.tool)
        own, defaults = dict(rule.retry_set), dict(self._default_retry)
        out: dict[str, str] = {}
        for key in RETRY_FIELDS:
            if system is not None and system.sets(key):
                where = f"system {system.name} (line {system.line(key)})"
                if key == "attempts" and not decision.side_effect.repeat_safe:
                    where = f"class {decision.side_effect}: never retried ({where} counts for repeat-safe classes)"
                out[key] = where
            elif key in own:
                out[key] = f"rule {rule.name} (line {own[key]})"
            elif key in defaults:
                out[key] = f"defaults (line {defaults[key]})"
            else:
                out[key] = f"built in (class {decision.side_effect})"
        return out

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The compiled rules, in file order."""
        return self._rules

    def __repr__(self) -> str:
        return f"Policy(team={self._team!r}, version={self._version!r}, rules={len(self._rules)})"

    def roles_of(self, reviewer: str) -> frozenset[str]:
        """The roles `reviewer` holds in this team, the name compared as the person it means (`Alice ` is
        `alice`); empty for someone who is not a reviewer."""
        return self._identities.get(identity(reviewer), frozenset())

    @property
    def owners(self) -> Owners | None:
        """Who answers for the team's pauses and stop rules (policy `owners:`); None when the file names nobody."""
        return self._owners

    def owners_of(self, tool: str | None = None) -> tuple[Owners, ...]:
        """Who answers for a pause of `tool` (a name or a glob): the owners of the rules naming it, where they set
        their own, else the team's; for a team or run pause (None), the team's. Empty when nobody is named."""
        if tool is not None:
            found = tuple(
                dict.fromkeys(
                    rule.owners
                    for rule in self._rules
                    if rule.owners is not None and (rule.names_tool(tool) or tool in rule.patterns)
                )
            )
            if found:
                return found
        return (self._owners,) if self._owners is not None else ()

    def may_pause(self, reviewer: str, tool: str | None = None) -> bool:
        """Whether `reviewer` may pause and unpause alone: an `operator` of the team, a team owner, or (for a tool)
        an owner of a rule naming it; an owner is a reviewer by name or anyone holding the role named."""
        roles = self.roles_of(reviewer)
        if not roles:
            return False
        if "operator" in roles:
            return True
        me = identity(reviewer)
        owners = {*self.owners_of(tool), *((self._owners,) if self._owners is not None else ())}
        return any(identity(name) == me or name in roles for o in owners for name in o.names)

    def classify(self, tool: str, args: Mapping[str, Any]) -> Decision:
        """Decide one call: allow, approve (with its gate) or deny, and why. Pure; never raises for any
        JSON-like `args`."""
        plan = self._plans.get(tool)
        if plan is None:
            plan = self._plan(tool)
        if plan.fixed is not None:
            return plan.fixed
        matched: list[Rule] = []
        key: list[int] = []
        unknown: tuple[Rule, str] | None = None
        for rule in plan.candidates:
            outcome = evaluate_all(rule.checks, args, rule.name) if rule.checks else True
            if outcome is True:
                matched.append(rule)
                key.append(rule.index)
            elif outcome is not False and unknown is None and not rule.shadow:
                unknown = (rule, outcome)  # pyright: ignore[reportAssignmentType]
        if unknown is not None:
            return self._deny(
                tool,
                plan,
                matched,
                unknown[0].name,
                unknown[1] + " (an argument of the wrong type or a missing one never auto-allows a call)",
            )
        decision = plan.decisions.get(tuple(key))
        if decision is None:
            decision = self._decide(tool, plan, matched)
            plan.decisions[tuple(key)] = decision
        return decision

    def explain(self, tool: str, args: Mapping[str, Any]) -> tuple[Decision, tuple[RuleTrace, ...]]:
        """The decision plus, for every rule in file order, whether it named the tool and how its
        conditions came out. Slower than `classify`; for people, not for the hot path."""
        traces: list[RuleTrace] = []
        for rule in self._rules:
            if not rule.names_tool(tool):
                traces.append(RuleTrace(rule.name, rule.line, "tool not named", ", ".join(rule.patterns)))
                continue
            outcome = evaluate_all(rule.checks, args, rule.name) if rule.checks else True
            conditions = rule.conditions() or "no conditions"
            if rule.shadow:
                traces.append(
                    RuleTrace(
                        rule.name,
                        rule.line,
                        "shadow: " + ("would match" if outcome is True else "would not match"),
                        conditions,
                    )
                )
            elif outcome is True:
                traces.append(RuleTrace(rule.name, rule.line, "matched", conditions))
            elif outcome is False:
                traces.append(RuleTrace(rule.name, rule.line, "conditions failed", conditions))
            else:
                traces.append(RuleTrace(rule.name, rule.line, "indeterminate", str(outcome)))
        return self.classify(tool, args), tuple(traces)

    def _plan(self, tool: str) -> _Plan:
        named = {rule.index: rule for rule in self._exact.get(tool, ())}
        named.update((rule.index, rule) for rule in self._globs if rule.names_tool(tool))
        candidates = tuple(named[index] for index in sorted(named))
        secrets = self._secrets.union(*(rule.secrets for rule in candidates))
        plan = _Plan(candidates, secrets, self._stop.for_tool(tool), self._system_for(tool))
        if not any(rule.checks for rule in candidates):
            plan.fixed = self._decide(tool, plan, list(candidates))
        if len(self._plans) < _CACHE_LIMIT:
            self._plans[tool] = plan
        return plan

    def _decide(self, tool: str, plan: _Plan, matched: list[Rule]) -> Decision:
        """The decision of the enforced rules of `matched`; when shadow rules are among them and would change the
        verdict or the class, the decision says so in `shadow`."""
        enforced = [rule for rule in matched if not rule.shadow]
        decision = self._enforce(tool, plan, enforced)
        if len(enforced) == len(matched) and not any(rule.shadow for rule in plan.candidates):
            return decision
        would = self._enforce(tool, plan, matched)
        if (would.verdict, would.side_effect) == (decision.verdict, decision.side_effect):
            return decision
        what = f"{would.verdict}" + (f", {would.side_effect}" if would.side_effect else "")
        return replace(decision, shadow=f"{what}, by rule {would.rule}: {would.reason}")

    def _enforce(self, tool: str, plan: _Plan, matched: list[Rule]) -> Decision:
        denies = [rule for rule in matched if rule.deny is not None]
        if denies:
            return self._deny(tool, plan, matched, denies[0].name, f"{denies[0].deny} (rule {denies[0].name})")
        if not matched:
            return self._deny(tool, plan, matched, None, self._no_match(tool, plan))
        winner = min(matched, key=lambda rule: rule.strictness)
        assert winner.side_effect is not None  # only deny rules lack a class, and they were handled above
        reason = f"rule {winner.name} matched"
        if winner.checks:
            reason += f" ({winner.conditions()})"
        if winner.approval is not None:
            roles = " or ".join(winner.approval.roles)
            reason += (
                f": {winner.side_effect} call, needs approval by {winner.approval.quorum} reviewer(s) "
                f"with role {roles} within {format_duration(winner.approval.expires_after)}"
            )
        else:
            reason += f": {winner.side_effect} call, allowed without approval"
        retry = winner.retry if plan.system is None else plan.system.apply(winner.retry, winner.side_effect)
        if len(matched) > 1:
            reason += f"; strictest of the matching rules {', '.join(rule.name for rule in matched)}"
        return Decision(
            team=self._team,
            tool=tool,
            verdict=Verdict.APPROVE if winner.approval else Verdict.ALLOW,
            side_effect=winner.side_effect,
            rule=winner.name,
            reason=reason,
            approval=winner.approval,
            retry=retry,
            on_failure=winner.on_failure,
            secret_fields=plan.secrets,
            policy_version=self._version,
            matched=tuple(rule.name for rule in matched),
            stop=plan.stop,
        )

    def _deny(self, tool: str, plan: _Plan, matched: list[Rule], rule: str | None, reason: str) -> Decision:
        gated = [r for r in matched if r.side_effect is not None and not r.shadow]
        side_effect = min(gated, key=lambda r: r.strictness).side_effect if gated else None
        return Decision(
            team=self._team,
            tool=tool,
            verdict=Verdict.DENY,
            side_effect=side_effect,
            rule=rule,
            reason=reason,
            approval=None,
            retry=NO_RETRY,
            on_failure=OnFailure.HALT,
            secret_fields=plan.secrets,
            policy_version=self._version,
            matched=tuple(r.name for r in matched),
        )

    def _no_match(self, tool: str, plan: _Plan) -> str:
        if not plan.candidates:
            return (
                f"no rule in {self._source} matches tool {tool}: add a rule with `tools: [{tool}]` "
                f"to {self._source} (unknown tools are denied)"
            )
        named = "; ".join(f"{rule.name} ({rule.conditions()})" for rule in plan.candidates)
        return (
            f"no rule in {self._source} matches tool {tool} with these arguments: the rules naming it "
            f"need {named}; add a rule for this case to {self._source}"
        )
