# pyright: strict
"""Validators for the small value types of a policy file: durations, condition operands, names.

Each raises `ValueError` with a sentence that says what to write instead; the loader puts the file, line
and field in front of it.
"""

from __future__ import annotations

import math
import re
from typing import Any, cast

__all__ = [
    "format_duration",
    "is_number",
    "json_type",
    "looks_numeric",
    "number_operand",
    "operand_kind",
    "parse_duration",
    "scalar_list",
    "scalar_operand",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBERISH = re.compile(r"^[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def is_number(value: object) -> bool:
    """True for a finite int or float that is not a bool: the only values numeric comparators accept."""
    if type(value) is int:
        return True
    if type(value) is float:
        return math.isfinite(value)
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def json_type(value: object) -> str:
    """The JSON name of a value's type, with an article: "a string", "null", "a non-finite number"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else "a non-finite number (NaN or infinity)"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__} (not a JSON value)"


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration: 1800 -> "30m", 90 -> "90s", 0.25 -> "250ms"."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def looks_numeric(text: str) -> bool:
    """True when a string reads like a number (YAML 1.1 keeps `6e4` as text)."""
    return bool(_NUMBERISH.match(text.strip()))


def parse_duration(value: Any) -> float:
    """Seconds from "30s", "5m", "1h", "2d", "250ms" or a positive number of seconds.

    Raises:
        ValueError: for anything else, including zero, negative, non-finite and boolean values.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a duration like 30s, 5m, 1h, 2d or a number of seconds, got {json_type(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration: write 30s, 5m, 1h, 2d or a number of seconds")
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    else:
        raise ValueError(  # noqa: TRY004 (pydantic turns a validator's ValueError into a field error)
            f"expected a duration like 30s, 5m, 1h, 2d or a number of seconds, got {json_type(value)}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive and finite, got {value!r}")
    return seconds


def number_operand(value: Any) -> int | float:
    """Check a numeric comparator operand: a finite int or float, never a bool or numeric-looking text."""
    if is_number(value):
        return value  # type: ignore[no-any-return]
    got = json_type(value)
    if isinstance(value, str):
        got += f" {value!r}"
        if looks_numeric(value):
            got += ": YAML reads it as text (write 50000 or 5.0e+4, not 5e4, and no quotes)"
    raise ValueError(f"expected a finite number, got {got}")


def scalar_operand(value: Any) -> str | int | float | bool:
    """Check a comparator operand: a string, a finite number or a boolean (never null, a list or a map)."""
    if isinstance(value, str | bool) or is_number(value):
        return value  # type: ignore[no-any-return]
    raise ValueError(f"expected a string, a finite number or true/false, got {json_type(value)}")


def scalar_list(value: Any) -> tuple[str | int | float | bool, ...]:
    """Check an `in`/`not_in` operand: a non-empty list of scalars all of one kind (text, number, boolean)."""
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"expected a non-empty list, got {json_type(cast(object, value))}")
    items = tuple(scalar_operand(item) for item in cast("list[Any]", value))
    kinds = {operand_kind(item) for item in items}
    if len(kinds) > 1:
        raise ValueError(f"the list mixes {' and '.join(sorted(kinds))} values: use one kind per list")
    return items


def operand_kind(value: object) -> str:
    """ "number", "string" or "boolean": what type an argument must have to be compared with `value`."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "number"
