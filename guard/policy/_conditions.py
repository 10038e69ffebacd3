# pyright: strict
"""Conditions on call arguments, compiled once at load into plain predicates.

Three-valued: a condition holds (True), fails (False), or is indeterminate, returned as the sentence that
explains it. An argument of the wrong JSON type, a missing argument, or a path through something that is
not an object is indeterminate, never silently false: a rule that might apply cannot be skipped because an
agent sent `"60000"` instead of `60000`. Only `exists` decides about a missing argument.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from guard.policy._spec import ConditionSpec
from guard.policy._values import is_number, json_type, operand_kind

__all__ = ["Comparator", "ConditionProblem", "FieldCheck", "Outcome", "compile_conditions", "evaluate_all"]

Outcome = bool | str  # True, False, or the reason the outcome is indeterminate
_MISSING: Any = object()
_AS = {"number": "as a number", "string": "as text", "boolean": "as true/false"}
_SEND = {"number": "send a number", "string": "send a string", "boolean": "send true or false"}
_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "number": is_number,
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
}


class ConditionProblem(ValueError):
    """A condition that can never be evaluated sensibly. Fields: field (the argument path), reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Comparator:
    """One comparator: the argument must be of `kind`, then `test(value)` decides."""

    op: str
    operand: Any
    kind: str
    accepts: Callable[[Any], bool]
    test: Callable[[Any], bool]

    def describe(self) -> str:
        """`gt 50000`, `in ['EU', 'UK']`, `glob 'crm.*'`."""
        operand: object = self.operand
        if isinstance(operand, tuple):
            operand = list(cast("tuple[object, ...]", operand))
        return f"{self.op} {operand!r}"


@dataclass(frozen=True, slots=True)
class FieldCheck:
    """All comparators on one argument (a dotted path into nested objects)."""

    field: str
    path: tuple[str, ...]
    comparators: tuple[Comparator, ...]
    exists: bool | None

    def describe(self) -> str:
        """`amount_cents gt 50000 and lte 100000`."""
        parts = [c.describe() for c in self.comparators]
        if self.exists is not None:
            parts.insert(0, f"exists {str(self.exists).lower()}")
        return f"{self.field} " + " and ".join(parts)

    def evaluate(self, args: Mapping[str, Any], rule: str) -> Outcome:
        """True or False when the argument decides it; otherwise the sentence saying what is wrong."""
        value: object = args
        for depth, part in enumerate(self.path):
            if type(value) is not dict and not isinstance(value, Mapping):  # dict first: the common case
                where = ".".join(self.path[:depth])
                return (
                    f"argument {where} is {json_type(value)}; rule {rule} reads {self.field} from it "
                    f"({self.describe()}): send an object"
                )
            value = cast("Mapping[str, object]", value).get(part, _MISSING)
            if value is _MISSING:
                if self.exists is not None:
                    return not self.exists
                return f"argument {self.field} is missing; rule {rule} needs it to decide ({self.describe()}): send it"
        if self.exists is False:
            return False
        for comparator in self.comparators:
            if not comparator.accepts(value):
                return (
                    f"argument {self.field} is {json_type(value)}; rule {rule} compares it "
                    f"{_AS[comparator.kind]} ({self.describe()}): {_SEND[comparator.kind]}"
                )
        for comparator in self.comparators:  # noqa: SIM110 - a plain loop is faster than all() on the hot path
            if not comparator.test(value):
                return False
        return True


def evaluate_all(checks: tuple[FieldCheck, ...], args: Mapping[str, Any], rule: str) -> Outcome:
    """Kleene AND: False if any check is False, else the first indeterminate reason, else True."""
    unknown: str | None = None
    for check in checks:
        outcome = check.evaluate(args, rule)
        if outcome is False:
            return False
        if outcome is not True and unknown is None:
            unknown = outcome  # pyright: ignore[reportAssignmentType]
    return True if unknown is None else unknown


def compile_conditions(when: Mapping[str, ConditionSpec]) -> tuple[FieldCheck, ...]:
    """Compile a rule's `when:` into field checks, in file order.

    Raises:
        ConditionProblem: a condition without comparators, or `exists: false` combined with others (it could
            never hold); the message names the field.
    """
    checks: list[FieldCheck] = []
    for field, spec in when.items():
        comparators = tuple(_comparators(spec))
        if not comparators and spec.exists is None:
            raise ConditionProblem(field, "the condition has no comparator: add one (eq, gt, in, exists, ...)")
        if spec.exists is False and comparators:
            raise ConditionProblem(field, "`exists: false` cannot be combined with other comparators")
        checks.append(FieldCheck(field, tuple(field.split(".")), comparators, spec.exists))
    return tuple(checks)


def _comparators(spec: ConditionSpec) -> list[Comparator]:
    out: list[Comparator] = []
    for op in ("eq", "ne", "gt", "gte", "lt", "lte"):
        operand = getattr(spec, op)
        if operand is not None:
            out.append(_make(op, operand, operand_kind(operand), _bind(op, operand)))
    if spec.in_ is not None:
        members: tuple[Any, ...] = spec.in_
        out.append(_make("in", members, operand_kind(members[0]), lambda v: _member(v, members)))
    if spec.not_in is not None:
        excluded: tuple[Any, ...] = spec.not_in
        out.append(_make("not_in", excluded, operand_kind(excluded[0]), lambda v: not _member(v, excluded)))
    if spec.glob is not None:
        match = re.compile(fnmatch.translate(spec.glob)).match
        out.append(_make("glob", spec.glob, "string", lambda v: match(v) is not None))
    return out


def _make(op: str, operand: Any, kind: str, test: Callable[[Any], bool]) -> Comparator:
    return Comparator(op, operand, kind, _ACCEPTS[kind], test)


def _bind(op: str, operand: Any) -> Callable[[Any], bool]:
    # One closure per operator, so a test is a single call (no operator-module indirection).
    tests: dict[str, Callable[[Any], bool]] = {
        "eq": lambda v: v == operand,
        "ne": lambda v: v != operand,
        "gt": lambda v: v > operand,
        "gte": lambda v: v >= operand,
        "lt": lambda v: v < operand,
        "lte": lambda v: v <= operand,
    }
    return tests[op]


def _member(value: Any, members: tuple[Any, ...]) -> bool:
    # `1 == True` in Python; the kind check already refused bools against numbers, so == is safe here.
    return any(value == member for member in members)
