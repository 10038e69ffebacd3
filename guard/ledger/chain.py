"""The tamper-evident event chain: each event's hash covers the previous hash and its own stored fields."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["GENESIS", "ChainReport", "event_hash", "verify_events"]

GENESIS = "0" * 64
_SEP = "\x1f"


def event_hash(prev_hash: str, run_id: str | None, call_id: str | None, at: float, actor: str, entity: str,
               from_state: str | None, to_state: str, detail: str) -> str:
    """SHA-256 hex over the previous hash and the event's fields exactly as stored."""
    text = _SEP.join((prev_hash, run_id or "", call_id or "", repr(at), actor, entity, from_state or "",
                      to_state, detail))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of a verification: `ok`, how many events were checked, and the first bad row if any."""

    ok: bool
    checked: int
    bad_id: int | None = None
    problem: str | None = None


EventRow = tuple[int, str | None, str | None, float, str, str, str | None, str, str, str]


def verify_events(rows: Iterable[EventRow]) -> ChainReport:
    """Walk events in id order; report the first whose hash does not follow from the row before it.

    The previous hash is not stored on each row (it is the row before's `hash`), so one check catches both
    an edited row and a deleted, inserted or reordered one: the chain breaks at the first row after it.
    """
    prev = GENESIS
    checked = 0
    for (id_, run_id, call_id, at, actor, entity, from_state, to_state, detail, hash_) in rows:
        if event_hash(prev, run_id, call_id, at, actor, entity, from_state, to_state, detail) != hash_:
            return ChainReport(False, checked, id_, "hash does not follow from the row before it: this row was "
                                                    "edited, or a row before it was deleted, inserted or reordered")
        prev = hash_
        checked += 1
    return ChainReport(True, checked)
