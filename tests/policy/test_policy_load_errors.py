"""Every invalid policy is refused with one PolicyError naming file, line and field; never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from guard.errors import PolicyError
from guard.policy import load_policy, policy_from_text

BAD = Path(__file__).parent / "bad"

# file -> (line, field, a fragment of the reason)
EXPECTED: dict[str, tuple[int, str, str]] = {
    "syntax.yaml": (5, "<document>", "YAML syntax error"),
    "wrong_type.yaml": (10, "rules[0].approval.quorum", "expected a whole number, got a string"),
    "unknown_key_top.yaml": (6, "owner", "unknown key 'owner'"),
    "unknown_key_nested.yaml": (
        11,
        "rules[1].retry.max_delay",
        "allowed here are attempts, backoff, timeout",
    ),
    "duplicate_key.yaml": (6, "rules[0].class", "duplicate key 'class'"),
    "unsafe_tag.yaml": (2, "description", "unsafe tag"),
    "alias_bomb.yaml": (2, "<document>", "anchors (&a) are not allowed"),
    "alias_reuse.yaml": (4, "<document>", "write the value out"),
    "not_mapping.yaml": (1, "<document>", "not a mapping"),
    "empty.yaml": (1, "<document>", "the file is empty"),
    "team_mismatch.yaml": (2, "team", "does not match the file name 'team_mismatch'"),
    "irreversible_auto.yaml": (14, "rules[3].approval", "irreversible calls need a human approval"),
    "retry_compensable.yaml": (7, "rules[0].retry.attempts", "compensable calls are not repeat-safe"),
    "quorum_too_large.yaml": (12, "rules[0].approval.quorum", "only 2 hold it (alice, bob)"),
    "unknown_comparator.yaml": (8, "rules[0].when.amount_cents.greater_than", "unknown key 'greater_than'"),
    "bad_duration.yaml": (8, "rules[0].approval.expires_after", "'5 minutes' is not a duration"),
    "negative_duration.yaml": (6, "rules[0].retry.timeout", "must be positive"),
    "missing_rules.yaml": (1, "rules", "required key 'rules' is missing"),
    "deny_with_class.yaml": (6, "rules[0].class", "a deny rule takes no `class`"),
    "duplicate_rule_name.yaml": (6, "rules[1].name", "used twice"),
    "text_number_operand.yaml": (5, "rules[0].when.amount_cents.gt", "YAML reads it as text"),
    "merge_key.yaml": (4, "rules[0]", "merge keys"),
    "bool_key.yaml": (3, "reviewers", "quote it"),
    "two_documents.yaml": (4, "<document>", "one YAML document"),
    "null_value.yaml": (6, "rules[0].on_failure", "is null"),
    "nan_operand.yaml": (7, "rules[0].when.amount_cents.lt", "non-finite"),
    "mixed_in_list.yaml": (7, "rules[0].when.country.in", "mixes number and string"),
    "no_class.yaml": (3, "rules[0].class", "needs `class:`"),
    "unknown_class.yaml": (5, "rules[0].class", "'read', 'idempotent'"),
    "empty_roles.yaml": (6, "rules[0].approval.roles", "at least 1 item"),
    "stop_zero.yaml": (6, "stop.max_calls.email.send_*", "greater than or equal to 1"),
    "stop_unknown_key.yaml": (
        4,
        "stop.per_minute",
        "allowed here are blank_fields, duplicates, max_calls, rate, records, repeats",
    ),
    "stop_rate_no_period.yaml": (4, "stop.rate.billing.*.per", "required key 'per' is missing"),
    "owners_nobody.yaml": (6, "owners.backup", "'billing-leads' is neither a reviewer nor a role"),
    "owners_backup_is_owner.yaml": (6, "owners.backup", "the backup is the owner"),
    "rule_owners_nobody.yaml": (13, "rules[1].owners.backup", "'carol' is neither a reviewer nor a role"),
}


def test_every_bad_file_has_an_expectation() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_policy_is_refused_at_the_offending_line(name: str) -> None:
    line, field, fragment = EXPECTED[name]
    path = BAD / name
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    err = info.value
    assert str(err).startswith(f"{path}:{line}: {field}: ")
    assert (err.fields["file"], err.fields["line"]) == (str(path), line)
    assert err.fields["field"] == ("" if field == "<document>" else field)
    assert fragment in err.fields["reason"]


def test_billion_laughs_is_refused_without_expanding() -> None:
    start = time.perf_counter()
    with pytest.raises(PolicyError, match="anchors"):
        load_policy(BAD / "alias_bomb.yaml")
    assert time.perf_counter() - start < 0.5


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="is a directory") as info:
        load_policy(tmp_path)
    assert info.value.fields["line"] is None


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(tmp_path / "nobody.yaml")


def test_bad_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"team: latin\ndescription: caf\xe9\nrules: []\n")
    with pytest.raises(PolicyError, match="not UTF-8") as info:
        load_policy(path)
    assert info.value.fields["line"] == 2


def test_a_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"team: huge\n" + b"# padding\n" * 110_000)
    with pytest.raises(PolicyError, match="larger than 1 MiB"):
        load_policy(path)


def test_policy_from_text_checks_the_team_against_the_source_name() -> None:
    text = "team: billing\nrules:\n  - {name: r, tools: [a], class: read}\n"
    assert policy_from_text(text, source="policies/billing.yaml").team == "billing"
    assert policy_from_text(text, source="<inline>").team == "billing"
    with pytest.raises(PolicyError, match="does not match"):
        policy_from_text(text, source="policies/growth.yaml")


def test_the_version_hashes_the_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("team: v\nrules:\n  - {name: r, tools: [a], class: read}\n")
    first = load_policy(path).version
    path.write_text("team: v\nrules:\n  - {name: r, tools: [a], class: read}  # changed\n")
    second = load_policy(path).version
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 16
    assert first != second


@pytest.mark.parametrize("text", ["team: [", "\x00", "team: x\n\t- bad", "- - - -", "? [a]\n: b", "123", "'x'"])
def test_garbage_only_ever_raises_policy_error(text: str) -> None:
    with pytest.raises(PolicyError):
        policy_from_text(text, source="x.yaml")
