"""Argument hashes bind an approval to exact arguments; redaction hides secrets and nothing else."""

from __future__ import annotations

import json
import math
import random
from typing import Any, cast

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from guard.canonical import DEFAULT_SECRET_FIELDS, REDACTED, args_hash, canonical_json, fast_encoder, redact

SAFE = 2**53 - 1
# Plain text, plus the characters where canonical JSON is easy to get wrong: escapes, line separators, DEL,
# and code points whose UTF-16 order differs from their code-point order.
tricky = st.sampled_from(["\x00", "\x1f", "\x7f", '"', "\\", "\u2028", "\u2029", "\ue000", "\U0001f600", "é"])
chars = st.characters(exclude_categories=["Cs"]) | tricky
keys = st.text(chars, max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-SAFE, SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(chars, max_size=8)
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12
)
arguments = st.dictionaries(keys, json_values, max_size=5)


def shuffled(value: Any, rnd: random.Random) -> Any:
    """The same JSON value with every object's keys in another insertion order."""
    if isinstance(value, dict):
        items = list(cast(dict[str, Any], value).items())
        rnd.shuffle(items)
        return {k: shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rnd) for v in cast(list[Any], value)]
    return value


def model(value: Any) -> Any:
    """A value that is equal exactly when two JSON values are the same JSON text (1 == 1.0, True != 1)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", float(value) + 0.0)  # -0.0 and 0 serialise alike
    if isinstance(value, list):
        return ("array", tuple(model(v) for v in cast(list[Any], value)))
    return ("object", frozenset((k, model(v)) for k, v in value.items()))


@given(args=arguments, seed=st.integers())
def test_the_hash_does_not_depend_on_key_order_at_any_depth(args: dict[str, Any], seed: int) -> None:
    assert args_hash(shuffled(args, random.Random(seed))) == args_hash(args)


@given(a=arguments, b=arguments)
def test_different_arguments_have_different_hashes(a: dict[str, Any], b: dict[str, Any]) -> None:
    if model(a) != model(b):
        assert args_hash(a) != args_hash(b)
    else:
        assert args_hash(a) == args_hash(b)


@given(args=arguments, key=keys, old=json_values, new=json_values)
def test_changing_one_value_changes_the_hash(args: dict[str, Any], key: str, old: Any, new: Any) -> None:
    if model(old) == model(new):
        return
    assert args_hash({**args, key: old}) != args_hash({**args, key: new})


_ENCODERS = (
    json.JSONEncoder(),  # json.dumps: events' details
    json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False),  # row digests
    json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False),  # canonical
)


@given(value=json_values)
def test_an_encoder_made_once_writes_exactly_what_its_json_encoder_writes(value: Any) -> None:
    """The hot path's encoders (built once, `fast_encoder`) write the same text as `JSONEncoder.encode`, so
    digests, details and argument hashes are unchanged; a value JSON cannot hold is refused alike."""
    for encoder in _ENCODERS:
        assert fast_encoder(encoder)(value) == encoder.encode(value)
        with pytest.raises(TypeError):
            fast_encoder(encoder)({"a": [object()]})
    with pytest.raises(ValueError, match="JSON compliant"):
        fast_encoder(_ENCODERS[1])([math.nan])


@given(value=json_values)
def test_canonical_bytes_are_those_of_the_rfc_8785_reference(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"n": 1}, {"n": True}),
        ({"n": 0}, {"n": False}),
        ({"n": "1"}, {"n": 1}),
        ({"n": None}, {}),
        ({"n": [1]}, {"n": 1}),
        ({"n": {}}, {"n": []}),
    ],
)
def test_type_confused_values_never_share_a_hash(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert args_hash(a) != args_hash(b)


@pytest.mark.parametrize("bad", [{"n": math.nan}, {"n": math.inf}, {"n": object()}, {"n": 2**60}])
def test_values_json_cannot_hold_exactly_are_refused_with_type_error(bad: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="JSON"):
        args_hash(bad)


def test_object_keys_sort_by_utf16_code_units_as_rfc_8785_requires() -> None:
    assert canonical_json({"\ue000": 1, "\U0001f600": 2, "a": 0}) == '{"a":0,"\U0001f600":2,"\ue000":1}'.encode()


def test_the_hash_is_sha256_prefixed_hex() -> None:
    digest = args_hash({"a": 1})
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64


# -- redaction --------------------------------------------------------------------------------------------

SECRET_NAMES = sorted(DEFAULT_SECRET_FIELDS | {"billing_address"})
ordinary_keys = keys.filter(lambda k: k.lower() not in DEFAULT_SECRET_FIELDS and k.lower() != "billing_address")


@st.composite
def any_case(draw: st.DrawFn, names: list[str]) -> str:
    name = draw(st.sampled_from(names))
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if f else c for c, f in zip(name, flips, strict=True))


mixed_keys = ordinary_keys | any_case(SECRET_NAMES)
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(mixed_keys, inner, max_size=4), max_leaves=15
)


def check_redacted(original: Any, out: Any) -> None:
    """Every secret-named entry is `[REDACTED]`; everything else is identical to the original."""
    if isinstance(original, dict):
        assert isinstance(out, dict)
        original_obj, out_obj = cast(dict[str, Any], original), cast(dict[str, Any], out)
        assert list(out_obj) == list(original_obj)
        for key, item in original_obj.items():
            if key.lower() in SECRET_NAMES:
                assert out_obj[key] == REDACTED
            else:
                check_redacted(item, out_obj[key])
    elif isinstance(original, list):
        assert isinstance(out, list)
        original_arr, out_arr = cast(list[Any], original), cast(list[Any], out)
        assert len(out_arr) == len(original_arr)
        for a, b in zip(original_arr, out_arr, strict=True):
            check_redacted(a, b)
    else:
        assert out is original or (out == original and type(out) is type(original))


@given(doc=documents)
def test_redact_replaces_secret_keys_at_any_depth_in_any_case_and_keeps_the_rest(doc: Any) -> None:
    snapshot = repr(doc)
    out = redact(doc, ["Billing_Address"])
    check_redacted(doc, out)
    assert repr(doc) == snapshot  # the input is never modified


@given(
    doc=st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ordinary_keys, inner, max_size=4),
        max_leaves=15,
    )
)
def test_redact_returns_the_value_itself_when_nothing_is_secret(doc: Any) -> None:
    assert redact(doc, ["billing_address"]) is doc


def test_redact_finds_a_secret_inside_a_list_of_objects() -> None:
    doc = {"cards": [{"Card_Number": "4111111111111111", "last4": "1111"}], "API_KEY": {"nested": "sk"}}
    assert redact(doc) == {"cards": [{"Card_Number": REDACTED, "last4": "1111"}], "API_KEY": REDACTED}
