"""Time spans for people: how long something waited, how long is left before it expires; and the times people
type (`7d`, `2h` ago, Unix seconds, an ISO time), read the same by the CLI and the page."""

from __future__ import annotations

import datetime as dt
import re
import time

__all__ = ["format_span", "parse_when"]

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: float | None = None) -> float:
    """`7d`, `2h`, `30m` (that long before `now`), Unix seconds, or an ISO 8601 time (local time when it names no
    zone), as Unix seconds.

    Raises:
        ValueError: none of those, with what to type instead.
    """
    text = text.strip()
    span = _SPAN.match(text)
    if span:
        return (now or time.time()) - float(span.group(1)) * _UNIT[span.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use 7d, 2h, 30m, Unix seconds or 2026-12-04T09:10)") from None


def format_span(seconds: float) -> str:
    """A time span for people, in its two largest units and never rounded up: 14399 -> "3h 59m", 7200 -> "2h",
    95 -> "1m 35s", 40 -> "40s", 90061 -> "1d 1h". What is left before an expiry reads true to the minute."""
    left = max(0, int(seconds))
    counts: list[tuple[int, str]] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        counts.append((count, unit))
    first = next((i for i, (count, _) in enumerate(counts) if count), len(counts) - 1)
    return " ".join(f"{count}{unit}" for count, unit in counts[first : first + 2] if count) or "0s"
