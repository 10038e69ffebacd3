"""Who a name means: reviewer and requester names compared as people, not as strings.

`"Agent-Bob "`, `agent-bob` and the same in full-width letters name one person: Unicode NFKC, then case folding,
then surrounding white space removed. Self-approval, a reviewer's roles and the policy loader's check that one
name means one person all compare `identity(name)`.
"""

from __future__ import annotations

import unicodedata

__all__ = ["identity", "same_person"]


def identity(name: str) -> str:
    """The normalised form of a person's name (NFKC, casefolded, stripped); what comparisons use."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def same_person(a: str | None, b: str | None) -> bool:
    """True when both names are given and normalise to the same identity."""
    return a is not None and b is not None and identity(a) == identity(b)
