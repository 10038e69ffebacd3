"""Canonical JSON, argument hashes and the limits every argument value must keep.

The argument hash binds an approval to the exact arguments a reviewer saw: RFC 8785 (JSON Canonicalization
Scheme) then SHA-256. Key order never changes the hash; any change of a value does. Arguments that hold
secrets get a keyed hash instead (`bound_hash`), so the hash anyone can see never lets a secret be guessed.

Arguments are nested at most `MAX_DEPTH` containers deep (by default; `canonical_json(max_depth=...)`): deeper
values are refused with `UnfitArguments` before anything recurses into them. Every message of `UnfitArguments`
names where the problem is and what kind of value is there, never the value itself (it may be a secret).
Redaction lives in `guard.redaction`; its names are re-exported here for the modules that import them from
this one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

import rfc8785

from guard.redaction import (
    DEFAULT_SECRET_FIELDS,
    REDACTED,
    redact,
    restore_secrets,
    scrub,
    sets_secrets,
    shown,
    storable,
    storable_value,
)

__all__ = [
    "DEFAULT_SECRET_FIELDS",
    "MAX_BYTES",
    "MAX_DEPTH",
    "REDACTED",
    "UnfitArguments",
    "args_hash",
    "bound_hash",
    "canonical_json",
    "fast_encoder",
    "redact",
    "restore_secrets",
    "scrub",
    "sets_secrets",
    "to_json",
]

MAX_DEPTH = 64  # containers nested in the arguments (the arguments object itself is level 1)
MAX_BYTES = 1 << 20  # canonical JSON size of the arguments

_MAX_SAFE_INT = 2**53 - 1


def fast_encoder(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """`encoder.encode`, made once instead of per call: the same text for every value without a reference cycle.

    `JSONEncoder.encode` builds a new C encoder (with its settings and a cycle-check dict) on every call, which
    costs more than encoding the small rows and details of the call path. This is that C encoder, built once,
    without the cycle check (a cycle recurses until RecursionError instead of raising ValueError; the values
    given here are rows, details and arguments that `_plain` already walked). Falls back to `encoder.encode`
    where the C accelerator is missing.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    indented: Any = getattr(encoder, "indent", None)  # typeshed says never None; at run time it is by default
    if make is None or indented is not None:  # pragma: no cover - CPython has the accelerator; we never indent
        return encoder.encode
    quote = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring
    chunks = make(
        None,
        encoder.default,
        quote,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    join = "".join

    def encode(value: Any) -> str:
        return join(chunks(value, 0))

    return encode


_dumps_sorted = fast_encoder(
    json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
)

Limit = Literal["depth", "size", "json"]


class UnfitArguments(TypeError):
    """Arguments that cannot be hashed exactly: nested too deep, too large, or not JSON. Internal: the call
    path turns it into `ArgumentsRefused`. `limit` says which ("depth", "size", "json"); the message names the
    place and the kind of value, never the value."""

    def __init__(self, message: str, limit: Limit) -> None:
        super().__init__(message)
        self.limit: Limit = limit


class _TooDeep(Exception):
    pass


def _plain(value: Any, depth: int) -> bool:
    """True when the stdlib encoder's sorted output is already RFC 8785: no floats, safe integers only,
    ASCII keys (so code-point order equals the UTF-16 order RFC 8785 sorts by). Raises _TooDeep when
    containers nest below `depth` more levels."""
    kind = cast(Any, type(value))  # pyright: ignore[reportUnknownVariableType] - the type of Any is unknown by nature
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT
    if kind is dict:
        if not depth:
            raise _TooDeep
        for k, v in value.items():  # noqa: SIM110 - an explicit loop: all() over a generator is 2x slower here
            if type(k) is not str or not k.isascii() or not _plain(v, depth - 1):
                return False
        return True
    if kind is list or kind is tuple:
        if not depth:
            raise _TooDeep
        for v in value:  # noqa: SIM110 - as above, on the hot path
            if not _plain(v, depth - 1):
                return False
        return True
    return False  # floats, subclasses, anything else: the reference implementation decides


def canonical_json(value: Any, *, max_depth: int = MAX_DEPTH) -> bytes:
    """RFC 8785 canonical bytes of a JSON value.

    Most tool arguments (strings, integers, booleans, nesting) take the C encoder; anything else (floats,
    non-ASCII keys, big integers) goes through the reference implementation. A property test pins that
    both agree.

    Raises:
        UnfitArguments: (a TypeError) containers nested deeper than `max_depth`, or a value JSON cannot hold
            exactly; the message never quotes the value.
    """
    try:
        if _plain(value, max_depth):
            return _dumps_sorted(value).encode()
    except (_TooDeep, RecursionError):
        raise UnfitArguments(_too_deep(max_depth), "depth") from None
    except UnicodeEncodeError:  # a lone surrogate: a str no UTF-8 text (hence no JSON on the wire) can hold
        raise UnfitArguments(f"arguments must be JSON values: {unfit(value)}", "json") from None
    where = _deeper_than(value, max_depth)
    if where is not None:
        raise UnfitArguments(_too_deep(max_depth, where), "depth")
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError):
        raise UnfitArguments(f"arguments must be JSON values: {unfit(value)}", "json") from None


def args_hash(args: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of the canonical JSON of the arguments (for arguments without secrets; see `bound_hash`)."""
    return "sha256:" + hashlib.sha256(canonical_json(args)).hexdigest()


def bound_hash(canonical: bytes, redacted: Mapping[str, Any] | None, key: bytes) -> str:
    """The hash shown for arguments whose canonical JSON is `canonical`.

    Without secrets (`redacted` None) it is the plain SHA-256. With secrets it is SHA-256 over the canonical
    JSON of the redacted arguments plus HMAC-SHA256(`key`, the real canonical JSON): it still changes with any
    change of any value, secrets included (an approval binds to the exact arguments), but nobody without `key`
    can test a guess of a secret against it.
    """
    if redacted is None:
        return "sha256:" + hashlib.sha256(canonical).hexdigest()
    mac = hmac.new(key, canonical, hashlib.sha256).digest()
    return "sha256:" + hashlib.sha256(canonical_json(redacted) + b"\x00" + mac).hexdigest()


def to_json(value: Any) -> str:
    """Compact JSON for storage (not canonical; fast), never refused: non-JSON values are stored as their repr; a
    lone surrogate, which no UTF-8 text can hold, as U+FFFD (`storable`); what JSON cannot hold as it is (nesting
    deeper than the encoder goes, a reference cycle, NaN or infinity, a key that is not text) spelled out as text
    where it stands (`storable_value`)."""
    if value is None:
        return "null"
    try:
        text = _dumps_stored(value)
    except (ValueError, TypeError, RecursionError):
        text = _dumps_stored(storable_value(value))
    return storable(text)


def _dumps_stored(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=shown)


def _too_deep(max_depth: int, where: str = "") -> str:
    if len(where) > 80:
        where = where[:80] + "..."
    at = f" (at {where})" if where else ""
    return (
        f"the arguments nest lists and objects more than {max_depth} levels deep{at}, the most Guard "
        "accepts: flatten them"
    )


def _deeper_than(value: Any, max_depth: int) -> str | None:
    """The path of the first container nested deeper than `max_depth`, or None. No recursion."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > max_depth:
                return path or "the top"
            children = (
                cast(Mapping[Any, Any], item).items() if isinstance(item, Mapping) else enumerate(cast(list[Any], item))
            )
            for key, child in children:
                stack.append((child, depth + 1, _join(path, key)))
    return None


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def unfit(value: Any) -> str:
    """Where `value` (already within the depth limit) holds something JSON cannot hold exactly, and what kind
    of thing it is: never the value itself."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        name = path or "the arguments"
        if isinstance(item, Mapping):
            for key, child in cast(Mapping[Any, Any], item).items():
                if not isinstance(key, str):
                    return f"{name} has a key that is not a string ({type(key).__name__}): use string keys"
                stack.append((child, _join(path, key)))
        elif isinstance(item, list | tuple):
            stack.extend((child, _join(path, i)) for i, child in enumerate(cast(list[Any], item)))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > _MAX_SAFE_INT:
                return f"{name} is an integer beyond +/-2**53, where JSON numbers lose precision: send it as a string"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{name} is a non-finite number (NaN or infinity): send a finite number"
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"{name} is a string that is not valid Unicode (a lone surrogate)"
        else:
            kind = type(item).__name__
            return f"{name} is a {kind}, not a JSON value: send a string, number, boolean, list or object"
    return "a value JSON cannot hold exactly"
