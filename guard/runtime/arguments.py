"""What the ledger keeps of a call's arguments, decided once before anything is recorded.

`fingerprint` checks the limits (depth first, without recursing into the value; then the canonical size),
hashes (keyed when the arguments hold secrets: `guard.canonical.bound_hash`), redacts, and gathers the text
forms of the secret values that later scrub errors and results. Arguments over a limit or not exact JSON get
a refusal (the call is recorded denied, never run); over a limit, the ledger keeps a placeholder instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from guard.canonical import MAX_BYTES, MAX_DEPTH, UnfitArguments, bound_hash, canonical_json, to_json
from guard.redaction import redact, secret_texts
from guard.runtime.keys import SecretKey

__all__ = ["ArgumentRules", "Fingerprint", "fingerprint"]


@dataclass(frozen=True, slots=True)
class ArgumentRules:
    """The limits on a call's arguments and the key of their hash (settings of `Guard`)."""

    key: SecretKey
    max_depth: int = MAX_DEPTH
    max_bytes: int = MAX_BYTES


class Fingerprint(NamedTuple):
    """The arguments as recorded: stored JSON, visible hash, secret texts to scrub, and a refusal if any."""

    args_json: str
    digest: str
    secrets: tuple[str, ...] = ()
    refusal: str | None = None
    limit: str | None = None  # "depth", "size" or "json" when refused


def fingerprint(args: Mapping[str, Any], secret_fields: frozenset[str], rules: ArgumentRules, tool: str) -> Fingerprint:
    """Judge, hash and redact `args`. Raises SecretKeyMissing when they hold secrets and no key can be had."""
    try:
        canonical = canonical_json(args, max_depth=rules.max_depth)
    except UnfitArguments as exc:
        if exc.limit != "json":
            return _placeholder(str(exc), exc.limit)
        # No exact hash means no approval could bind to these arguments: refuse (recorded), never run.
        stored = to_json(redact(args, secret_fields))
        return Fingerprint(
            stored,
            "invalid:" + hashlib.sha256(stored.encode()).hexdigest(),
            secret_texts(args, secret_fields),
            f"the arguments cannot be hashed exactly ({exc})",
            "json",
        )
    if len(canonical) > rules.max_bytes:
        return _placeholder(
            f"the arguments are {len(canonical)} bytes as JSON, over the {rules.max_bytes} Guard "
            "accepts (`Guard(max_arg_bytes=...)`): pass a reference to large content instead",
            "size",
        )
    redacted = redact(args, secret_fields)
    if redacted is args:  # no secrets: the canonical text is what we store, one serialisation instead of two
        return Fingerprint(canonical.decode(), bound_hash(canonical, None, b""))
    return Fingerprint(
        to_json(redacted), bound_hash(canonical, redacted, rules.key.get(tool)), secret_texts(args, secret_fields)
    )


def _placeholder(reason: str, limit: str) -> Fingerprint:
    stored = to_json({"[not stored]": reason})
    return Fingerprint(stored, "invalid:" + hashlib.sha256(stored.encode()).hexdigest(), (), reason, limit)
