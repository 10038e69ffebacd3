"""What the stop rules on named arguments need from one call: the digests of the values they name, or the fields it
writes blank (`guard.ledger.field_stops` judges and counts them in the offer's transaction).

Values never reach the ledger: only a digest, keyed with the arguments' secret key when a named field is a secret
(a low-entropy secret, an account number, cannot be guessed back from it).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from guard.canonical import UnfitArguments, canonical_json
from guard.ledger import StopMark
from guard.policy import Decision, FieldStop
from guard.runtime.arguments import ArgumentRules

__all__ = ["stop_marks"]


def _digest(rule: FieldStop, tool: str, values: tuple[Any, ...], secret: bytes | None) -> str | None:
    # A duplicate is the same tool with the same values; distinct records are counted across the rule's tools.
    subject = [tool, *values] if rule.kind == "duplicates" else list(values)
    try:
        data = canonical_json(subject)
    except UnfitArguments:
        return None
    if secret is not None:
        return hmac.new(secret, data, hashlib.sha256).hexdigest()[:32]
    return hashlib.sha256(data).hexdigest()[:32]


def stop_marks(decision: Decision, tool: str, args: Mapping[str, Any], rules: ArgumentRules) -> tuple[StopMark, ...]:
    """One `StopMark` per stop rule on named arguments that counts this call; a rule whose fields the call leaves
    out counts nothing for it (a message without a recipient duplicates nothing)."""
    out: list[StopMark] = []
    for rule in decision.stop.fields:
        common = (rule.on_trip, rule.pause_scope, rule.mode == "shadow", ", ".join(rule.fields))
        if rule.kind == "blanks":
            out.append(StopMark(rule.name, "blanks", "", 0, None, *common, blank=rule.blanks_in(args)))
            continue
        values = rule.values_in(args)
        if values is None:
            continue
        secret = rules.key.get(tool) if any(f.split(".")[0] in decision.secret_fields for f in rule.fields) else None
        mark = _digest(rule, tool, values, secret)
        if mark is not None:
            out.append(StopMark(rule.name, rule.kind, mark, rule.limit, rule.window, *common))
    return tuple(out)
