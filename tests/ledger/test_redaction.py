"""Redaction by value: which text forms of a secret are cut out, from what, and what is knowingly left alone."""

from __future__ import annotations

from typing import Any

from guard.redaction import REDACTED, conceal, scrub, secret_texts


def test_every_json_type_under_a_secret_name_gives_the_forms_a_program_writes_it_in() -> None:
    args = {
        "pin": "sk-123456",
        "card": 4111111111111,
        "ratio": 2718.5,
        "whole": 1234.0,
        "flag": True,
        "none": None,
        "codes": ["code-AAAA", 98765],
        "profile": {"part": "part-BBBB", "n": [5555.25]},
        "visible": "not-a-secret",
    }
    texts = secret_texts(args, ["pin", "card", "ratio", "whole", "flag", "none", "codes", "profile"])
    assert set(texts) == {
        "sk-123456",
        "4111111111111",
        "2718.5",
        "1234.0",
        "1234",
        "code-AAAA",
        "98765",
        "part-BBBB",
        "5555.25",
    }
    assert list(texts) == sorted(texts, key=lambda t: (-len(t), t))  # longest first: "1234.0" before "1234"


def test_booleans_null_and_values_shorter_than_four_characters_are_not_searched_by_value() -> None:
    assert secret_texts({"flag": False, "nothing": None, "cvv": "123", "n": 7}, ["flag", "nothing", "n"]) == ()
    assert (
        scrub("true, null and 123 stay readable", {"flag": True, "cvv": "123"}, ["flag"])
        == "true, null and 123 stay readable"
    )


def test_a_result_loses_the_secret_in_strings_keys_numbers_and_non_json_values_and_keeps_the_rest() -> None:
    class Receipt:
        def __repr__(self) -> str:
            return "Receipt(card=4111111111111)"

    texts = secret_texts({"card": 4111111111111, "token": "tok_live_ABCDEF"}, ["card"])
    result: dict[str, Any] = {
        "note": "charged 4111111111111 with tok_live_ABCDEF",
        "card": 4111111111111,
        "longer": 94111111111111,
        "tok_live_ABCDEF": 1,
        "items": [{"t": "xtok_live_ABCDEFx"}],
        "receipt": Receipt(),
        "amount": 1200,
        "ok": True,
    }
    stored = conceal(result, texts, [])
    assert stored == {
        "note": f"charged {REDACTED} with {REDACTED}",
        "card": REDACTED,
        "longer": REDACTED,
        REDACTED: 1,
        "items": [{"t": f"x{REDACTED}x"}],
        "receipt": f"Receipt(card={REDACTED})",
        "amount": 1200,
        "ok": True,
    }
    clean = {"note": "nothing secret", "amount": 1200}
    assert conceal(clean, texts, []) is clean  # nothing to cut: no copy
