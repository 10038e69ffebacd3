# pyright: strict
"""Compile `stop.records`, `stop.duplicates` and `stop.blank_fields` of a validated policy into `FieldStop`s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast

from guard.errors import PolicyError
from guard.policy._field_stops import FieldStop, Kind
from guard.policy._spec import StopSpec, _FieldStopSpec  # pyright: ignore[reportPrivateUsage]
from guard.policy._yaml import Path, format_path

__all__ = ["field_stops"]


def _compile(r: _FieldStopSpec, kind: Kind, fields: tuple[str, ...], limit: int, window: float | None) -> FieldStop:
    return FieldStop(
        name=r.name,
        kind=kind,
        tools=tuple(r.tools),
        fields=fields,
        limit=limit,
        window=window,
        on_trip=cast(Literal["deny", "pause"], r.on_trip),
        pause_scope=cast(Literal["team", "tool"], r.pause),
        mode=cast(Literal["enforce", "shadow"], r.mode),
    )


def field_stops(spec: StopSpec, source: str, line_of: Callable[[Path], int | None]) -> tuple[FieldStop, ...]:
    """Every stop rule on named arguments, in file order (records, duplicates, blank fields).

    Raises:
        PolicyError: two of them share a name (a trip names its rule; the name must say which one).
    """
    compiled: list[tuple[Path, FieldStop]] = []
    for i, r in enumerate(spec.records):
        window = None if r.per == "run" else float(r.per)
        compiled.append((("stop", "records", i), _compile(r, "records", (r.field,), r.max, window)))
    for i, d in enumerate(spec.duplicates):
        compiled.append((("stop", "duplicates", i), _compile(d, "duplicates", tuple(d.fields), d.max, d.within)))
    for i, b in enumerate(spec.blank_fields):
        compiled.append((("stop", "blank_fields", i), _compile(b, "blanks", tuple(b.fields), 0, None)))
    seen: dict[str, Path] = {}
    for at, rule in compiled:
        if rule.name in seen:
            raise PolicyError(
                file=source,
                line=line_of((*at, "name")),
                field=format_path((*at, "name")),
                reason=f"stop rule name {rule.name!r} is used twice (also at "
                f"{format_path(seen[rule.name])}): give each its own name",
            )
        seen[rule.name] = at
    return tuple(rule for _, rule in compiled)
