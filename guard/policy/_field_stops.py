# pyright: strict
"""The seeds' stop rules on named arguments (policy `stop.records`, `stop.duplicates`, `stop.blank_fields`).

A `FieldStop` is a compiled rule: which tools it counts, which arguments it reads, its limit, and what a trip
does. The policy only says which rules apply to a call and reads the values they name (`values_of`, `blanks_in`);
the ledger counts them in the transaction that offers the call (`guard.ledger.field_stops`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FieldStop", "blanks_in", "values_of"]

Kind = Literal["records", "duplicates", "blanks"]
_MISSING = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldStop:
    """One stop rule on named arguments.

    Attributes:
        name: The rule's name in the policy (unique among its stop rules).
        kind: `records` (at most `limit` distinct values of `fields[0]` per run or per window), `duplicates` (at
            most `limit` calls of one tool with the same values of `fields` within `window` seconds, across runs),
            or `blanks` (a call whose named fields are present and empty, null or whitespace).
        tools: Tool names or globs it counts.
        fields: The argument names it reads (dotted paths into nested objects).
        limit: The most it allows (0 for `blanks`: any blank trips).
        window: Seconds of the window; None for `records` per run and for `blanks`.
        on_trip: `deny` the call, or `pause` (deny it and pause `pause_scope`: the team, or the tool called).
        pause_scope: `team` or `tool`.
        mode: `enforce`, or `shadow`: record what it would have decided, refuse nothing.
    """

    name: str
    kind: Kind
    tools: tuple[str, ...]
    fields: tuple[str, ...]
    limit: int = 0
    window: float | None = None
    on_trip: Literal["deny", "pause"] = "deny"
    pause_scope: Literal["team", "tool"] = "team"
    mode: Literal["enforce", "shadow"] = "enforce"

    def counts(self, tool: str) -> bool:
        """True when the rule counts calls of `tool`."""
        return any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.tools)

    def values_in(self, args: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """See `values_of`."""
        return values_of(self, args)

    def blanks_in(self, args: Mapping[str, Any]) -> tuple[str, ...]:
        """See `blanks_in`."""
        return blanks_in(self, args)


def _lookup(args: Mapping[str, Any], path: str) -> Any:
    value: Any = args
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]  # pyright: ignore[reportUnknownVariableType]
    return value  # pyright: ignore[reportUnknownVariableType]


def values_of(rule: FieldStop, args: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The values of the rule's fields in `args`, or None when one is missing (nothing to count: a call without
    the recipient is not a duplicate of anything)."""
    out: list[Any] = []
    for path in rule.fields:
        value = _lookup(args, path)
        if value is _MISSING:
            return None
        out.append(value)
    return tuple(out)


def blanks_in(rule: FieldStop, args: Mapping[str, Any]) -> tuple[str, ...]:
    """The rule's fields that `args` writes blank: present, and null, an empty or whitespace-only string, or an
    empty list or object. A field left out is not written, so it is not blank."""
    found: list[str] = []
    for path in rule.fields:
        value = _lookup(args, path)
        if value is _MISSING:
            continue
        if (
            value is None
            or (isinstance(value, str) and not value.strip())
            or (isinstance(value, list | dict | tuple) and not value)
        ):
            found.append(path)
    return tuple(found)
