# pyright: strict
"""The side-effect classes: what a tool call changes in the world.

The policy assigns a class to each call (`guard.policy`) and the ledger records it on the call
(`guard.ledger.CallRecord.side_effect`); both take the one enum from here, since neither may import the other.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SideEffectClass"]


class SideEffectClass(StrEnum):
    """What a tool call changes in the world, from harmless to final.

    `read` changes nothing; `idempotent` is a write keyed so that repeating it changes nothing more;
    `compensable` is a write a compensation can undo; `irreversible` cannot be undone (money, messages,
    deletion, permissions) and always needs a human approval.
    """

    READ = "read"
    IDEMPOTENT = "idempotent"
    COMPENSABLE = "compensable"
    IRREVERSIBLE = "irreversible"

    @property
    def repeat_safe(self) -> bool:
        """True when running the call again cannot do harm (read, idempotent): only these retry."""
        return self in (SideEffectClass.READ, SideEffectClass.IDEMPOTENT)

    @property
    def rank(self) -> int:
        """Strictness: read 0 < idempotent 1 < compensable 2 < irreversible 3."""
        return _RANK[self]


_RANK = {
    SideEffectClass.READ: 0,
    SideEffectClass.IDEMPOTENT: 1,
    SideEffectClass.COMPENSABLE: 2,
    SideEffectClass.IRREVERSIBLE: 3,
}
