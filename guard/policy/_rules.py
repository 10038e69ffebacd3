# pyright: strict
"""Compiled rules, and the checks that span fields which the file format alone cannot express.

A `Rule` is a plain frozen value with its tool patterns precompiled, its conditions compiled and every
default filled in, so `Policy.classify` never validates or parses anything.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from guard.identity import identity
from guard.policy._conditions import ConditionProblem, FieldCheck, compile_conditions
from guard.policy._spec import OwnersSpec, PolicySpec, RetrySpec, RuleSpec
from guard.policy._types import ApprovalRule, OnFailure, Owners, RetryRule, SideEffectClass
from guard.policy._yaml import Path

__all__ = ["DEFAULT_EXPIRY", "RETRY_FIELDS", "Rule", "RuleProblem", "compile_owners", "compile_rules", "retry_lines"]

RETRY_FIELDS = ("attempts", "backoff", "timeout")

DEFAULT_EXPIRY = 3600.0
_GLOB_CHARS = re.compile(r"[*?\[]")
_ON_FAILURE = {
    SideEffectClass.READ: OnFailure.CONTINUE,
    SideEffectClass.IDEMPOTENT: OnFailure.COMPENSATE,
    SideEffectClass.COMPENSABLE: OnFailure.COMPENSATE,
    SideEffectClass.IRREVERSIBLE: OnFailure.HALT,
}


class RuleProblem(Exception):
    """A policy that parses but cannot be allowed. Fields: path (into the document), reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One compiled rule. `side_effect` is None exactly for deny rules (then `deny` holds the reason)."""

    index: int
    name: str
    line: int | None
    patterns: tuple[str, ...]
    exact: frozenset[str]
    globs: tuple[Callable[[str], re.Match[str] | None], ...]
    checks: tuple[FieldCheck, ...]
    deny: str | None
    side_effect: SideEffectClass | None
    approval: ApprovalRule | None
    retry: RetryRule
    on_failure: OnFailure
    secrets: frozenset[str]
    owners: Owners | None = None  # who answers for pauses of its tools, where they differ from the team's
    shadow: bool = False  # `mode: shadow`: decides nothing; each call records what it would have decided
    retry_set: tuple[tuple[str, int | None], ...] = ()  # the retry fields the rule sets itself, and their lines

    def names_tool(self, tool: str) -> bool:
        """True when one of the rule's exact names or globs matches `tool` (case-sensitive)."""
        return tool in self.exact or any(match(tool) is not None for match in self.globs)

    @property
    def strictness(self) -> tuple[int, int, int, int]:
        """Sort key, smallest wins: strictest class, then approval over auto, then the larger quorum,
        then file order."""
        rank = self.side_effect.rank if self.side_effect is not None else -1
        quorum = self.approval.quorum if self.approval is not None else 0
        return (-rank, 0 if self.approval is not None else 1, -quorum, self.index)

    def conditions(self) -> str:
        """The rule's conditions in words, or "" when it has none."""
        return " and ".join(check.describe() for check in self.checks)


def compile_rules(spec: PolicySpec, line_of: Callable[[Path], int | None]) -> tuple[Rule, ...]:
    """Compile every rule of a validated policy, filling in defaults.

    Raises:
        RuleProblem: a duplicate rule name, a rule with neither `class` nor `deny` (or a deny rule with a
            gate), an irreversible rule without approval, retries on a class that is not repeat-safe, a
            quorum larger than the reviewers holding the roles, an impossible condition, or two reviewer
            names that mean one person (`Alice` and `alice`: see `guard.identity`).
    """
    reviewers = spec.roles()
    _one_person_per_name(reviewers)
    holders = _role_holders(reviewers)
    defaults = spec.defaults
    default_retry = defaults.retry if defaults is not None else None
    if default_retry is not None and default_retry.attempts is not None:
        raise RuleProblem(
            ("defaults", "retry", "attempts"),
            "attempts depend on the class: set `retry.attempts` on the rules of repeat-safe classes",
        )
    default_expiry = DEFAULT_EXPIRY
    if defaults is not None and defaults.approval is not None and defaults.approval.expires_after is not None:
        default_expiry = defaults.approval.expires_after
    seen: set[str] = set()
    rules: list[Rule] = []
    for index, rule in enumerate(spec.rules):
        at: Path = ("rules", index)
        if rule.name in seen:
            raise RuleProblem((*at, "name"), f"rule name {rule.name!r} is used twice: give each rule its own name")
        seen.add(rule.name)
        compiled = _compile(index, rule, at, holders, default_retry, default_expiry, line_of(at))
        if rule.owners is not None:
            compiled = replace(compiled, owners=compile_owners(rule.owners, (*at, "owners"), reviewers, line_of))
        if rule.mode == "shadow":
            compiled = replace(compiled, shadow=True)
        if rule.retry is not None:
            compiled = replace(compiled, retry_set=retry_lines(rule.retry, (*at, "retry"), line_of))
        rules.append(compiled)
    return tuple(rules)


def retry_lines(spec: RetrySpec, at: Path, line_of: Callable[[Path], int | None]) -> tuple[tuple[str, int | None], ...]:
    """The fields of `RETRY_FIELDS` a `retry:` block sets, each with its line (for `guard policy explain`)."""
    return tuple((key, line_of((*at, key))) for key in RETRY_FIELDS if getattr(spec, key) is not None)


def compile_owners(
    spec: OwnersSpec, at: Path, reviewers: Mapping[str, list[str]], line_of: Callable[[Path], int | None]
) -> Owners:
    """The owners of a pause point, each checked to name someone: a reviewer of `reviewers:` (compared as the
    person the name means) or a role one of them holds. An owner nobody answers to is refused (fail closed).

    Raises:
        RuleProblem: an owner or backup that names no reviewer and no role, or a backup that is the owner.
    """
    people = {identity(name) for name in reviewers}
    roles = {role for held in reviewers.values() for role in held}
    for key in ("owner", "backup"):
        name: str = getattr(spec, key)
        if identity(name) not in people and name not in roles:
            raise RuleProblem(
                (*at, key),
                f"{key} {name!r} is neither a reviewer nor a role under `reviewers:`: "
                "name a reviewer or a role someone holds, so a person answers for it",
            )
    if identity(spec.owner) == identity(spec.backup):
        raise RuleProblem(
            (*at, "backup"), "the backup is the owner: name someone else, who answers when the owner cannot"
        )
    return Owners(owner=spec.owner, backup=spec.backup, line=line_of(at))


def _compile(
    index: int,
    rule: RuleSpec,
    at: Path,
    holders: Mapping[str, frozenset[str]],
    default_retry: RetrySpec | None,
    default_expiry: float,
    line: int | None,
) -> Rule:
    try:
        checks = compile_conditions(rule.when or {})
    except ConditionProblem as exc:
        raise RuleProblem((*at, "when", exc.field), exc.reason) from None
    exact = frozenset(p for p in rule.tools if not _GLOB_CHARS.search(p))
    globs = tuple(re.compile(fnmatch.translate(p)).match for p in rule.tools if _GLOB_CHARS.search(p))
    secrets = frozenset(rule.secrets)
    if rule.deny is not None:
        for key in ("class", "approval", "retry", "on_failure"):
            if getattr(rule, "class_" if key == "class" else key) is not None:
                raise RuleProblem((*at, key), f"a deny rule takes no `{key}`: remove it, or remove `deny`")
        return Rule(
            index=index,
            name=rule.name,
            line=line,
            patterns=tuple(rule.tools),
            exact=exact,
            globs=globs,
            checks=checks,
            deny=rule.deny,
            side_effect=None,
            approval=None,
            retry=RetryRule(),
            on_failure=OnFailure.HALT,
            secrets=secrets,
        )
    side_effect = rule.class_
    if side_effect is None:
        raise RuleProblem(
            (*at, "class"),
            "the rule needs `class:` (read, idempotent, compensable, irreversible) or `deny: <reason>`",
        )
    approval = _approval(rule, at, holders, default_expiry)
    if side_effect is SideEffectClass.IRREVERSIBLE and approval is None:
        raise RuleProblem(
            (*at, "approval"),
            "irreversible calls need a human approval: add `approval: {roles: [<role>]}` or choose another class",
        )
    retry = _retry(side_effect, rule.retry, default_retry, at)
    on_failure = rule.on_failure or _ON_FAILURE[side_effect]
    return Rule(
        index=index,
        name=rule.name,
        line=line,
        patterns=tuple(rule.tools),
        exact=exact,
        globs=globs,
        checks=checks,
        deny=None,
        side_effect=side_effect,
        approval=approval,
        retry=retry,
        on_failure=on_failure,
        secrets=secrets,
    )


def _approval(
    rule: RuleSpec, at: Path, holders: Mapping[str, frozenset[str]], default_expiry: float
) -> ApprovalRule | None:
    spec = rule.approval
    if spec is None:
        return None
    eligible: set[str] = set()
    for role in spec.roles:
        eligible |= holders.get(role, frozenset())
    if spec.quorum > len(eligible):
        roles = ", ".join(spec.roles)
        who = ", ".join(sorted(eligible)) or "nobody"
        raise RuleProblem(
            (*at, "approval", "quorum"),
            f"quorum {spec.quorum} needs {spec.quorum} reviewers with role {roles}, but only "
            f"{len(eligible)} hold it ({who}): add reviewers under `reviewers:` or lower the quorum",
        )
    expiry = spec.expires_after if spec.expires_after is not None else default_expiry
    return ApprovalRule(roles=tuple(spec.roles), quorum=spec.quorum, expires_after=expiry)


def _retry(side_effect: SideEffectClass, spec: RetrySpec | None, default: RetrySpec | None, at: Path) -> RetryRule:
    attempts = 3 if side_effect.repeat_safe else 1
    initial, maximum, multiplier, timeout = 0.1, 2.0, 2.0, None
    for layer in (default, spec):
        if layer is None:
            continue
        if layer.backoff is not None:
            initial, maximum, multiplier = layer.backoff.initial, layer.backoff.max, layer.backoff.multiplier
        if layer.timeout is not None:
            timeout = layer.timeout
    if spec is not None and spec.attempts is not None:
        if spec.attempts > 1 and not side_effect.repeat_safe:
            raise RuleProblem(
                (*at, "retry", "attempts"),
                f"{side_effect} calls are not repeat-safe: reconcile instead of retrying "
                f"(set attempts: 1 or remove it)",
            )
        attempts = spec.attempts
    if maximum < initial:
        raise RuleProblem(
            (*at, "retry", "backoff", "max"),
            f"backoff max ({maximum}s) is below initial ({initial}s): raise max",
        )
    return RetryRule(
        attempts=attempts,
        backoff_initial=initial,
        backoff_max=maximum,
        backoff_multiplier=multiplier,
        timeout=timeout,
    )


def _one_person_per_name(reviewers: Mapping[str, list[str]]) -> None:
    """Refuse two `reviewers:` entries whose names normalise to one identity: they would be one person with two
    sets of roles, or two people sharing one token's authority."""
    seen: dict[str, str] = {}
    for name in reviewers:
        first = seen.setdefault(identity(name), name)
        if first != name:
            raise RuleProblem(
                ("reviewers", name),
                f"reviewer {name!r} and reviewer {first!r} are the same name (names are compared without case, "
                "surrounding spaces or Unicode width): keep one entry with all of that person's roles",
            )


def _role_holders(reviewers: Mapping[str, list[str]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for reviewer, roles in reviewers.items():
        for role in roles:
            out.setdefault(role, set()).add(reviewer)
    return {role: frozenset(names) for role, names in out.items()}
