"""Time spans for people: how long something waited, how long is left before it expires."""

from __future__ import annotations

__all__ = ["format_span"]


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
