"""Canonical JSON, argument hashes and secret redaction.

The argument hash binds an approval to the exact arguments a reviewer saw: RFC 8785 (JSON Canonicalization
Scheme) then SHA-256. Key order never changes the hash; any change of a value does.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

import rfc8785

REDACTED = "[REDACTED]"

# Argument names that hold secrets in every team, whatever the policy says (compared case-insensitively).
DEFAULT_SECRET_FIELDS: frozenset[str] = frozenset(
    {"password", "passwd", "secret", "api_key", "apikey", "token", "access_token", "refresh_token",
     "authorization", "card_number", "cvv", "cvc", "private_key", "client_secret"}
)


_MAX_SAFE_INT = 2**53 - 1
_dumps_sorted = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                                 allow_nan=False).encode


def _plain(value: Any) -> bool:
    """True when the stdlib encoder's sorted output is already RFC 8785: no floats, safe integers only,
    ASCII keys (so code-point order equals the UTF-16 order RFC 8785 sorts by)."""
    kind = cast(Any, type(value))  # pyright: ignore[reportUnknownVariableType] - the type of Any is unknown by nature
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT
    if kind is dict:
        for k, v in value.items():  # noqa: SIM110 - an explicit loop: all() over a generator is 2x slower here
            if type(k) is not str or not k.isascii() or not _plain(v):
                return False
        return True
    if kind is list or kind is tuple:
        for v in value:  # noqa: SIM110 - as above, on the hot path
            if not _plain(v):
                return False
        return True
    return False  # floats, subclasses, anything else: the reference implementation decides


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of a JSON value. Raises TypeError for values JSON cannot hold.

    Most tool arguments (strings, integers, booleans, nesting) take the C encoder; anything else (floats,
    non-ASCII keys, big integers) goes through the reference implementation. A property test pins that
    both agree.
    """
    try:
        if _plain(value):
            return _dumps_sorted(value).encode()
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise TypeError(f"arguments must be JSON values: {exc}") from exc


def args_hash(args: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of the canonical JSON of the arguments."""
    return "sha256:" + hashlib.sha256(canonical_json(args)).hexdigest()


def to_json(value: Any) -> str:
    """Compact JSON for storage (not canonical; fast). Non-JSON values are stored as their repr."""
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)


def redact(value: Any, secret_fields: Iterable[str] = ()) -> Any:
    """A copy of `value` with every mapping entry whose key names a secret replaced by `[REDACTED]`.

    Secret names are the policy's `secrets` plus `DEFAULT_SECRET_FIELDS`, matched case-insensitively at any
    depth. Returns `value` itself when nothing needs redacting (the common case costs one walk, no copy).
    """
    if value is None or isinstance(value, str | int | float):
        return value
    return _redact(value, _secret_names(frozenset(secret_fields)))


@functools.lru_cache(maxsize=256)
def _secret_names(secret_fields: frozenset[str]) -> frozenset[str]:
    return DEFAULT_SECRET_FIELDS.union(f.lower() for f in secret_fields)


def scrub(text: str, args: Any, secret_fields: Iterable[str] = ()) -> str:
    """`text` with the values of the secret arguments in `args` replaced by `[REDACTED]`.

    For text Guard did not write itself (an exception message may quote an API key it was given).
    Values shorter than 4 characters are left alone: replacing them would mangle ordinary words.
    """
    names = _secret_names(frozenset(secret_fields))
    for value in _secret_values(args, names):
        text = text.replace(value, REDACTED)
    return text


def sets_secrets(value: Any, secret_fields: Iterable[str] = ()) -> bool:
    """True when `value` holds a secret field with anything but `[REDACTED]`: a reviewer's edit may not."""
    return redact(value, secret_fields) != value


def restore_secrets(edited: Any, original: Any, secret_fields: Iterable[str] = ()) -> Any:
    """`edited` (arguments a reviewer edited from their redacted form) with every secret entry taken from
    `original`, the agent's real arguments, at the same place: a reviewer never sees nor sets a secret.

    A secret entry with no counterpart in `original` keeps the edited value (and will not hash as approved).
    """
    return _restore(edited, original, _secret_names(frozenset(secret_fields)))


def _restore(edited: Any, original: Any, names: frozenset[str]) -> Any:
    if isinstance(edited, Mapping):
        src: Mapping[Any, Any] = cast(Mapping[Any, Any], original) if isinstance(original, Mapping) else {}
        out: dict[Any, Any] = {}
        for key, item in cast(Mapping[Any, Any], edited).items():
            secret = isinstance(key, str) and key.lower() in names and key in src
            out[key] = src[key] if secret else _restore(item, src.get(key), names)
        return out
    if isinstance(edited, list):
        items = cast(list[Any], edited)
        src_list: list[Any] = list(cast(list[Any], original)) if isinstance(original, list | tuple) else []
        return [_restore(item, src_list[i] if i < len(src_list) else None, names) for i, item in enumerate(items)]
    return edited


def _secret_values(value: Any, names: frozenset[str]) -> Iterable[str]:
    if isinstance(value, Mapping):
        for key, item in cast(Mapping[Any, Any], value).items():
            if isinstance(key, str) and key.lower() in names:
                if isinstance(item, str | int) and len(text := str(item)) >= 4:
                    yield text
            else:
                yield from _secret_values(item, names)
    elif isinstance(value, list | tuple):
        for item in cast(list[Any] | tuple[Any, ...], value):
            yield from _secret_values(item, names)


def _redact(value: Any, names: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        mapping = cast(Mapping[Any, Any], value)
        out: dict[Any, Any] | None = None
        for key, item in mapping.items():
            new = REDACTED if isinstance(key, str) and key.lower() in names else _redact(item, names)
            if new is not item and out is None:
                out = dict(mapping)
            if out is not None:
                out[key] = new
        return mapping if out is None else out
    if isinstance(value, list | tuple):
        seq = cast(list[Any] | tuple[Any, ...], value)
        items = [_redact(item, names) for item in seq]
        changed = any(a is not b for a, b in zip(items, seq, strict=True))
        return items if changed else seq
    return value
