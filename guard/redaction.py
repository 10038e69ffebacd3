"""Secret redaction: by field name in arguments and results, and by value in any text or result.

Two layers, both applied before anything is stored, logged or served:

- By name (`redact`): a mapping entry whose key is a secret name (the policy's `secrets:` plus
  `DEFAULT_SECRET_FIELDS`, case-insensitive, at any depth) is replaced by `[REDACTED]`, whatever its JSON type.
- By value (`secret_texts`, `scrub`, `scrub_value`): the text forms of the call's own secret values (a string
  as is, an integer in decimal, a float as Python and JSON write it; the leaves of a secret list or object)
  are cut out of error messages and of every string, number and key of a result.

What it cannot catch (the README says so too): a secret that is encoded (base64, hex, URL-escaped, split up)
or reformatted (`4111 1111 ...` for `4111111111111111`); values shorter than `MIN_SCRUB_CHARS` characters,
which are only redacted where they stand as a secret field (cutting them out of text would mangle it); and
booleans and null, which carry too little to find by value and are redacted where they stand only.

Text that is stored is also made storable (`storable`): a lone surrogate (what `surrogateescape` decoding of a
file name or of a process's output leaves in a str) has no UTF-8 form, so no database, log or HTTP answer can
hold it; it becomes U+FFFD, the character a decoder shows for bytes that are not text. A result JSON cannot hold
as it is (`storable_value`: nested deeper than `STORE_DEPTH`, a reference cycle, a non-finite number, a key that is
not text) is stored with those places spelled out as text, never refused: the tool has already run.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

__all__ = [
    "DEFAULT_SECRET_FIELDS",
    "MIN_SCRUB_CHARS",
    "REDACTED",
    "conceal",
    "described",
    "redact",
    "restore_secrets",
    "scrub",
    "scrub_text",
    "scrub_value",
    "secret_texts",
    "sets_secrets",
    "shown",
    "storable",
    "storable_value",
]

REDACTED = "[REDACTED]"
MIN_SCRUB_CHARS = 4
STORE_DEPTH = 100  # containers kept of a stored result; deeper ones are stored as "[nested too deep]"

# Argument names that hold secrets in every team, whatever the policy says (compared case-insensitively).
DEFAULT_SECRET_FIELDS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "api_key",
        "apikey",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "card_number",
        "cvv",
        "cvc",
        "private_key",
        "client_secret",
    }
)


def redact(value: Any, secret_fields: Iterable[str] = ()) -> Any:
    """A copy of `value` with every mapping entry whose key names a secret replaced by `[REDACTED]`.

    Secret names are the policy's `secrets` plus `DEFAULT_SECRET_FIELDS`, matched case-insensitively at any
    depth. Returns `value` itself when nothing needs redacting (the common case costs one walk, no copy).
    """
    if value is None or isinstance(value, str | int | float):
        return value
    return _redact(value, secret_names(frozenset(secret_fields)))


@functools.lru_cache(maxsize=256)
def secret_names(secret_fields: frozenset[str]) -> frozenset[str]:
    """The lower-cased secret names of a policy plus the defaults."""
    return DEFAULT_SECRET_FIELDS.union(f.lower() for f in secret_fields)


def secret_texts(args: Any, secret_fields: Iterable[str] = ()) -> tuple[str, ...]:
    """The text forms of every secret value in `args`, longest first: what `scrub` cuts out of text.

    A string is its own text; an integer its decimal digits; a float its Python and JSON spelling (and, when
    it is whole, its integer digits); a list or object under a secret name gives the texts of its leaves.
    Booleans, null and texts shorter than `MIN_SCRUB_CHARS` give none (see the module docstring).
    """
    found: set[str] = set()
    _collect(args, secret_names(frozenset(secret_fields)), found, under_secret=False)
    return tuple(sorted(found, key=lambda text: (-len(text), text)))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` as UTF-8 can hold it: each lone surrogate replaced by U+FFFD (the same `text` when there is none)."""
    if text.isascii() or _LONE_SURROGATE.search(text) is None:
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


def scrub_text(text: str, texts: tuple[str, ...]) -> str:
    """`text` with every occurrence of each of `texts` (longest first) replaced by `[REDACTED]`, made `storable`."""
    for secret in texts:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return storable(text)


def scrub(text: str, args: Any, secret_fields: Iterable[str] = ()) -> str:
    """`text` with the values of the secret arguments in `args` replaced by `[REDACTED]`.

    For text Guard did not write itself (an exception message may quote an API key it was given).
    """
    return scrub_text(text, secret_texts(args, secret_fields))


def scrub_value(value: Any, texts: tuple[str, ...]) -> Any:
    """A copy of a result with `texts` cut out of every string and key; a number whose text holds one becomes
    `[REDACTED]`; anything that is not JSON becomes its scrubbed `repr` (what the ledger would store).

    Returns `value` itself when nothing changed.
    """
    if not texts:
        return value
    return _scrub(value, texts)


def conceal(result: Any, texts: tuple[str, ...], secret_fields: Iterable[str] = ()) -> Any:
    """A result as it may be stored and served: the call's secret values scrubbed, secret fields redacted. A result
    nested too deep to walk, or holding a reference cycle, is first cut to what can be stored (`storable_value`)."""
    try:
        return redact(scrub_value(result, texts), secret_fields)
    except RecursionError:
        return redact(scrub_value(storable_value(result), texts), secret_fields)


def described(exc: BaseException) -> str:
    """`"<type>: <message>"` of an exception, as errors are recorded; the message is `<no message: its str
    failed>` when the exception's own `__str__` raises (the tool's class: its failure must not stop the record)."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - any failure of the tool's __str__ only costs the message
        message = "<no message: its str failed>"
    return f"{type(exc).__name__}: {message}"


def shown(value: object) -> str:
    """`repr(value)` for a value JSON cannot hold; its type's name when that `repr` itself fails."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - the tool's object: any failure of its repr is only a worse way to show it
        return f"<{type(value).__qualname__} object>"


def storable_value(value: Any, depth: int = STORE_DEPTH) -> Any:
    """A copy of `value` that JSON can hold: containers below `depth` levels become "[nested too deep]", a container
    inside itself "[cycle]", a non-finite number "NaN" / "Infinity" / "-Infinity", a key that is not a JSON scalar
    its `repr`. Recursion is bounded by `depth`."""
    return _storable(value, depth, frozenset())


def _storable(value: Any, depth: int, inside: frozenset[int]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if not isinstance(value, Mapping | list | tuple):
        return value
    if depth <= 0:
        return "[nested too deep]"
    marker = id(cast(object, value))
    if marker in inside:
        return "[cycle]"
    inside = inside | {marker}
    if isinstance(value, Mapping):
        return {
            (key if isinstance(key, str | int | float | bool) or key is None else shown(key)): _storable(
                item, depth - 1, inside
            )
            for key, item in cast(Mapping[Any, Any], value).items()
        }
    return [_storable(item, depth - 1, inside) for item in cast(list[Any] | tuple[Any, ...], value)]


def sets_secrets(value: Any, secret_fields: Iterable[str] = ()) -> bool:
    """True when `value` holds a secret field with anything but `[REDACTED]`: a reviewer's edit may not."""
    return redact(value, secret_fields) != value


def restore_secrets(edited: Any, original: Any, secret_fields: Iterable[str] = ()) -> Any:
    """`edited` (arguments a reviewer edited from their redacted form) with every secret entry taken from
    `original`, the agent's real arguments, at the same place: a reviewer never sees nor sets a secret.

    A secret entry with no counterpart in `original` keeps the edited value (and will not hash as approved).
    """
    return _restore(edited, original, secret_names(frozenset(secret_fields)))


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


def _forms(value: Any) -> Iterable[str]:
    """The ways a secret scalar is written out: by `str`, `repr`, JSON, and a whole float as an integer."""
    if isinstance(value, bool) or value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, int):
        return (str(value),)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ()
        forms = {repr(value), str(value)}
        if value.is_integer():
            forms.add(str(int(value)))
        return forms
    return (str(value),)


def _collect(value: Any, names: frozenset[str], found: set[str], *, under_secret: bool) -> None:
    if isinstance(value, Mapping):
        for key, item in cast(Mapping[Any, Any], value).items():
            secret = under_secret or (isinstance(key, str) and key.lower() in names)
            _collect(item, names, found, under_secret=secret)
    elif isinstance(value, list | tuple):
        for item in cast(list[Any] | tuple[Any, ...], value):
            _collect(item, names, found, under_secret=under_secret)
    elif under_secret:
        found.update(text for text in _forms(value) if len(text) >= MIN_SCRUB_CHARS)


def _scrub(value: Any, texts: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub_text(value, texts)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        spelled = set(_forms(value)) | {str(value)}
        return REDACTED if any(secret in form for form in spelled for secret in texts) else value
    if isinstance(value, Mapping):
        mapping = cast(Mapping[Any, Any], value)
        out = {
            (_scrub(key, texts) if isinstance(key, str) else key): _scrub(item, texts) for key, item in mapping.items()
        }
        same = len(out) == len(mapping) and all(k in mapping and out[k] is mapping[k] for k in out)
        return mapping if same else out
    if isinstance(value, list | tuple):
        seq = cast(list[Any] | tuple[Any, ...], value)
        items: list[Any] = [_scrub(item, texts) for item in seq]
        return seq if all(a is b for a, b in zip(items, seq, strict=True)) else items
    text = shown(value)
    scrubbed = scrub_text(text, texts)
    return value if scrubbed == text else scrubbed


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
