"""Counts the server tests report at the end of the run (requests tried, unauthorized decisions, races, 5xx)."""

from __future__ import annotations

from collections import Counter

FIGURES: Counter[str] = Counter()
