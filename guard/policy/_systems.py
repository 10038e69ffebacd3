# pyright: strict
"""Systems: the other systems a team's tools write to (policy `systems:`), each with the timeout and retry its tools
share, so one system's tools cannot disagree.

A system names its tools by name or glob. A tool belongs to at most one system (two systems whose globs could both
match one tool name are refused at load). What a system sets (`timeout`, `retry.attempts`, `retry.backoff`) applies
to every tool of that system, whichever rule decides the call; what it leaves unset comes from the rule, then from
`defaults:`, then from the class's built-in values. `retry.attempts` above 1 applies to the system's repeat-safe
classes only (read, idempotent): the other classes are never retried, whatever the system says.

A rule that sets a value its system sets too, to another value, is refused at load (`file:line: field`): one of
the two would be silently ignored. It is refused as soon as one tool name could be matched by both the rule's and
the system's patterns (`globs_meet`), so `tools: ["*.get_*"]` with a retry of its own meets every system holding
a `get_` tool.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from guard.policy._rules import RETRY_FIELDS, RuleProblem
from guard.policy._spec import PolicySpec, RetrySpec
from guard.policy._types import RetryRule, SideEffectClass
from guard.policy._values import format_duration
from guard.policy._yaml import Path

__all__ = ["RETRY_FIELDS", "System", "compile_systems", "globs_meet", "retry_set_by", "system_conflicts"]

_GLOB_CHARS = re.compile(r"[*?\[]")
Backoff = tuple[float, float, float]  # initial, max, multiplier


@dataclass(frozen=True, slots=True)
class System:
    """One compiled system: its name, its tool patterns and the values it sets for all of them (None: not set).
    `lines`: where the file sets each (`name` for the system itself, and each of `RETRY_FIELDS` it sets)."""

    name: str
    patterns: tuple[str, ...]
    exact: frozenset[str]
    globs: tuple[Callable[[str], re.Match[str] | None], ...]
    timeout: float | None = None
    attempts: int | None = None
    backoff: Backoff | None = None
    lines: tuple[tuple[str, int | None], ...] = ()

    def names_tool(self, tool: str) -> bool:
        return tool in self.exact or any(match(tool) is not None for match in self.globs)

    def line(self, what: str = "name") -> int | None:
        return dict(self.lines).get(what)

    def sets(self, what: str) -> bool:
        return getattr(self, what) is not None

    def apply(self, retry: RetryRule, side_effect: SideEffectClass) -> RetryRule:
        """`retry` (the deciding rule's) with what this system sets put over it."""
        attempts = retry.attempts
        if self.attempts is not None:
            attempts = self.attempts if side_effect.repeat_safe else 1
        initial, maximum, multiplier = self.backoff or (
            retry.backoff_initial,
            retry.backoff_max,
            retry.backoff_multiplier,
        )
        timeout = self.timeout if self.timeout is not None else retry.timeout
        return RetryRule(
            attempts=attempts,
            backoff_initial=initial,
            backoff_max=maximum,
            backoff_multiplier=multiplier,
            timeout=timeout,
        )

    def words(self, what: str) -> str:
        """The value this system sets for `what`, in words."""
        if what == "timeout":
            return format_duration(self.timeout or 0.0)
        if what == "attempts":
            return f"{self.attempts} attempt(s)"
        initial, maximum, multiplier = self.backoff or (0.0, 0.0, 0.0)
        return f"backoff {initial:g}s x{multiplier:g} up to {maximum:g}s"


def _backoff(spec: RetrySpec | None) -> Backoff | None:
    if spec is None or spec.backoff is None:
        return None
    return (spec.backoff.initial, spec.backoff.max, spec.backoff.multiplier)


def retry_set_by(spec: RetrySpec | None) -> dict[str, object]:
    """The retry values a rule's (or the defaults') `retry:` sets itself: field -> value."""
    if spec is None:
        return {}
    found: dict[str, object] = {}
    if spec.attempts is not None:
        found["attempts"] = spec.attempts
    if spec.backoff is not None:
        found["backoff"] = _backoff(spec)
    if spec.timeout is not None:
        found["timeout"] = spec.timeout
    return found


def compile_systems(spec: PolicySpec, line_of: Callable[[Path], int | None]) -> tuple[System, ...]:
    """The policy's systems, checked: no tool in two systems, backoff max not below initial, timeouts on the system
    (not under its `retry:`).

    Raises:
        RuleProblem: any of the above, naming the field.
    """
    out: list[System] = []
    for name, system in spec.systems.items():
        at: Path = ("systems", name)
        if system.retry is not None and system.retry.timeout is not None:
            raise RuleProblem(
                (*at, "retry", "timeout"), "a system's timeout is `timeout:` on the system itself: move it up a level"
            )
        backoff = _backoff(system.retry)
        if backoff is not None and backoff[1] < backoff[0]:
            raise RuleProblem(
                (*at, "retry", "backoff", "max"), f"backoff max ({backoff[1]}s) is below initial ({backoff[0]}s)"
            )
        lines: list[tuple[str, int | None]] = [("name", line_of(at))]
        if system.timeout is not None:
            lines.append(("timeout", line_of((*at, "timeout"))))
        if system.retry is not None:
            lines.extend(
                (key, line_of((*at, "retry", key)))
                for key in ("attempts", "backoff")
                if getattr(system.retry, key) is not None
            )
        compiled = System(
            name,
            tuple(system.tools),
            frozenset(p for p in system.tools if not _GLOB_CHARS.search(p)),
            tuple(re.compile(fnmatch.translate(p)).match for p in system.tools if _GLOB_CHARS.search(p)),
            system.timeout,
            system.retry.attempts if system.retry is not None else None,
            backoff,
            tuple(lines),
        )
        for other in out:
            both = _meeting(compiled.patterns, other.patterns)
            if both is not None:
                raise RuleProblem(
                    (*at, "tools"),
                    f"{both[0]!r} and {both[1]!r} of system {other.name} (line {other.line()}) can name the same "
                    "tool: a tool belongs to one system, so its timeout and retries have one source",
                )
        out.append(compiled)
    return tuple(out)


def system_conflicts(spec: PolicySpec, systems: tuple[System, ...]) -> None:
    """Refuse a rule that sets a retry value its system sets otherwise (for any tool both could name).

    Raises:
        RuleProblem: at the rule's field, naming the system, its line and both values.
    """
    if not systems:
        return
    for index, rule in enumerate(spec.rules):
        own = retry_set_by(rule.retry)
        if not own:
            continue
        repeat_safe = rule.class_ is not None and rule.class_.repeat_safe
        for system in systems:
            both = _meeting(tuple(rule.tools), system.patterns)
            if both is None:
                continue
            for what, value in own.items():
                theirs = getattr(system, what)
                if theirs is None or theirs == value or (what == "attempts" and not repeat_safe):
                    continue
                raise RuleProblem(
                    ("rules", index, "retry", what),
                    f"rule {rule.name} sets {what} for {both[0]!r}, which system {system.name} "
                    f"(line {system.line(what)}) sets to {system.words(what)} for {both[1]!r}: the tools of one "
                    f"system share its {what}; remove it from the rule or change the system",
                )


def _meeting(mine: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[str, str] | None:
    for a in mine:
        for b in theirs:
            if globs_meet(a, b):
                return (a, b)
    return None


# -- do two globs match a common name? -----------------------------------------------------------------------

_STAR = None
_Token = tuple[bool, frozenset[str]] | None  # None: `*`; else (negated, chars): one character of the class
_BIG = 4096  # a range wider than this is taken as "any character" (overlap is over-approximated: fail loud)


def _tokens(glob: str) -> tuple[_Token, ...]:
    """fnmatch's reading of a glob: `*`, `?`, `[...]` / `[!...]` and literal characters."""
    out: list[_Token] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1] is not _STAR:
                out.append(_STAR)
        elif c == "?":
            out.append((True, frozenset()))
        elif c == "[":
            j = i
            if j < len(glob) and glob[j] == "!":
                j += 1
            if j < len(glob) and glob[j] == "]":
                j += 1
            while j < len(glob) and glob[j] != "]":
                j += 1
            if j >= len(glob):
                out.append((False, frozenset("[")))  # no closing bracket: a literal `[`, as fnmatch reads it
                continue
            body, i = glob[i:j], j + 1
            negated = body.startswith("!")
            out.append(_char_class(body[1:] if negated else body, negated))
        else:
            out.append((False, frozenset(c)))
    return tuple(out)


def _char_class(body: str, negated: bool) -> _Token:
    chars: set[str] = set()
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = ord(body[k]), ord(body[k + 2])
            if hi - lo > _BIG:
                return (True, frozenset())
            chars.update(chr(n) for n in range(lo, hi + 1))
            k += 3
        else:
            chars.add(body[k])
            k += 1
    return (negated, frozenset(chars))


def _chars_meet(a: tuple[bool, frozenset[str]], b: tuple[bool, frozenset[str]]) -> bool:
    (neg_a, set_a), (neg_b, set_b) = a, b
    if neg_a and neg_b:
        return True  # two negated classes always leave characters in common
    if neg_a:
        return bool(set_b - set_a)
    if neg_b:
        return bool(set_a - set_b)
    return bool(set_a & set_b)


def globs_meet(a: str, b: str) -> bool:
    """Whether some tool name matches both globs (fnmatch rules, case-sensitive)."""
    return _meet(_tokens(a), _tokens(b))


@cache
def _meet(x: tuple[_Token, ...], y: tuple[_Token, ...]) -> bool:
    seen: dict[tuple[int, int], bool] = {}

    def go(i: int, j: int) -> bool:
        key = (i, j)
        if key in seen:
            return seen[key]
        seen[key] = False  # every move consumes a token: no cycle can come back here
        if i == len(x) and j == len(y):
            found = True
        elif i < len(x) and x[i] is _STAR:
            found = go(i + 1, j) or (j < len(y) and go(i, j + 1))
        elif j < len(y) and y[j] is _STAR:
            found = go(i, j + 1) or (i < len(x) and go(i + 1, j))
        elif i < len(x) and j < len(y):
            xi, yj = x[i], y[j]
            assert xi is not None and yj is not None
            found = _chars_meet(xi, yj) and go(i + 1, j + 1)
        else:
            found = False
        seen[key] = found
        return found

    return go(0, 0)
