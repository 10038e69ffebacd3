"""Hostile policy files are refused with `file:line: field: reason`, never a traceback or a hang.

Each class of file the issue names (tags whose value does not fit, integers past Python's digit limit,
nesting thousands deep, paths that are not regular files, files over the size cap) goes through
`PolicySet.load_dir` and through `guard policy validate` as a separate process, as a user would run it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.errors import PolicyError
from guard.policy import LivePolicies, PolicySet, load_policy, policy_from_text
from guard.policy._load import MAX_BYTES

Build = Callable[[Path], None]


def _text(body: str) -> Build:
    def build(path: Path) -> None:
        path.write_text(f"team: {path.stem}\n{body}")

    return build


def _flow(opening: str, closing: str, depth: int) -> str:
    return "rules: " + opening * depth + closing * depth + "\n"


def _block_mapping(depth: int) -> str:
    return "rules: []\ndescription:\n" + "".join(" " * (level + 1) + f"k{level}:\n" for level in range(depth))


def _block_list(depth: int) -> str:
    return "rules:\n" + "".join(" " * (level + 1) + "-\n" for level in range(depth))


def _laughs(path: Path) -> None:
    lines = [f"team: {path.stem}", "rules: []", 'lol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"lol{n}: &lol{n} [" + ",".join([f"*lol{n - 1}"] * 9) + "]" for n in range(1, 10)]
    path.write_text("\n".join(lines) + "\n")


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _loop(path: Path) -> None:
    path.symlink_to(path.name)


def _dangling(path: Path) -> None:
    path.symlink_to("nowhere.yaml")


def _device(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _huge(path: Path) -> None:
    with path.open("wb") as handle:  # sparse: 4 GiB that cost no disk, and would take seconds to read
        handle.truncate(4 * 1024**3)


# name -> (how to make it, line or None, field ("" for the document), a fragment of the reason)
HOSTILE: dict[str, tuple[Build, int | None, str, str]] = {
    "int_tag_on_word": (_text("rules:\n  - name: !!int abc\n"), 3, "rules[0].name", "'abc' is not a whole number"),
    "int_tag_on_decimal": (_text("rules: []\nstop:\n  repeats: !!int 1.5\n"), 4, "stop.repeats", "its tag !!int"),
    "float_tag_on_word": (_text("rules: []\nstop:\n  repeats: !!float abc\n"), 4, "stop.repeats", "is not a number"),
    "bool_tag_on_word": (_text("description: !!bool maybe\nrules: []\n"), 2, "description", "not true or false"),
    "null_tag_on_word": (_text("description: !!null abc\nrules: []\n"), 2, "description", "is not null"),
    "timestamp_tag_on_word": (_text("description: !!timestamp abc\nrules: []\n"), 2, "description", "not a date"),
    "timestamp_tag_bad_month": (
        _text("description: !!timestamp 2020-13-45\nrules: []\n"),
        2,
        "description",
        "'2020-13-45' is not a date",
    ),
    "int_past_digit_limit": (
        _text("rules: []\nstop:\n  repeats: " + "9" * 5000 + "\n"),
        4,
        "stop.repeats",
        "(5000 characters) is out of range",
    ),
    "hex_int_past_digit_limit": (
        _text("rules: []\nstop:\n  repeats: 0x" + "f" * 5000 + "\n"),
        4,
        "stop.repeats",
        "is out of range",
    ),
    "int_past_64_bits": (
        _text("rules:\n  - {name: r, tools: [a], class: read,\n     when: {n: {gt: 9223372036854775808}}}\n"),
        4,
        "rules[0].when.n.gt",
        "'9223372036854775808' is out of range",
    ),
    "flow_lists_5000_deep": (_text(_flow("[", "]", 5000)), 2, "", "nested more than 64 levels deep"),
    "flow_mappings_5000_deep": (_text(_flow("{a: ", "}", 5000)), 2, "", "nested more than 64 levels deep"),
    "block_mappings_1000_deep": (_text(_block_mapping(1000)), 66, "", "nested more than 64 levels deep"),
    "block_lists_1000_deep": (_text(_block_list(1000)), 66, "", "nested more than 64 levels deep"),
    "billion_laughs": (_laughs, 3, "", "anchors (&lol0) are not allowed"),
    "fifo": (_fifo, None, "", "is a named pipe (FIFO), not a regular file"),
    "directory": (_directory, None, "", "is a directory"),
    "symlink_loop": (_loop, None, "", "symbolic link loop"),
    "dangling_symlink": (_dangling, None, "", "symbolic link to 'nowhere.yaml', which does not exist"),
    "device": (_device, None, "", "is a device, not a regular file"),
    "over_the_size_cap": (_huge, None, "", "larger than 1 MiB (4294967296 bytes)"),
}


def _make(directory: Path, name: str) -> Path:
    path = directory / f"{name}.yaml"
    HOSTILE[name][0](path)
    return path


def _expected(path: Path, name: str) -> str:
    _, line, field, _ = HOSTILE[name]
    return f"{path}:{line}: {field or '<document>'}: " if line is not None else f"{path}: {field or '<document>'}: "


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_load_dir_keeps_the_hostile_file_as_its_teams_error(tmp_path: Path, name: str) -> None:
    """The hostile file becomes its team's PolicyError with line, field and reason; a good team beside it loads."""
    path = _make(tmp_path, name)
    (tmp_path / "good.yaml").write_text("team: good\nrules:\n  - {name: r, tools: [a], class: read}\n")
    start = time.perf_counter()
    policies = PolicySet.load_dir(tmp_path)
    elapsed = time.perf_counter() - start
    assert set(policies.policies) == {"good"}
    err = policies.errors[name]
    _, line, field, fragment = HOSTILE[name]
    assert str(err).startswith(_expected(path, name))
    assert (err.fields["line"], err.fields["field"]) == (line, field)
    assert fragment in err.fields["reason"]
    assert elapsed < 5.0  # a hang or a blow-up; the figure itself (well under 1 s) is measured for the README


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_policy_validate_refuses_the_hostile_file_without_a_traceback(tmp_path: Path, name: str) -> None:
    """`guard policy validate FILE` in its own process exits 1 with the one-line error, and never hangs."""
    path = _make(tmp_path, name)
    result = subprocess.run(
        [sys.executable, "-m", "guard", "policy", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.startswith(_expected(path, name))
    assert HOSTILE[name][3] in result.stdout
    assert result.stderr == ""


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's per-process I/O counters")
def test_a_file_over_the_cap_is_refused_before_any_of_it_is_read(tmp_path: Path) -> None:
    """The size comes from fstat: a 64 MiB file is refused having read (almost) none of its bytes."""
    path = tmp_path / "big.yaml"
    path.write_bytes(b"team: big\n" + b"#" * (64 * 1024 * 1024))

    def read_so_far() -> int:
        fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
        return int(fields["rchar"])

    before = read_so_far()
    with pytest.raises(PolicyError, match="larger than 1 MiB"):
        load_policy(path)
    assert read_so_far() - before < MAX_BYTES


def test_an_explicit_tag_that_fits_its_value_is_still_accepted() -> None:
    """`!!str 123`, `!!float 1` and `!!int 0x10` are plain YAML and keep working; implicit dates stay text."""
    text = (
        "team: t\ndescription: !!str 123\nrules:\n"
        "  - {name: r, tools: [a], class: read, when: {n: {gt: !!float 1}, m: {lt: !!int 0x10}}}\n"
        "  - {name: d, tools: [b], class: read, when: {day: {eq: 2020-13-45}}}\n"
    )
    policy = policy_from_text(text, source="t.yaml")
    assert policy.description == "123"
    assert policy.classify("a", {"n": 2, "m": 3}).rule == "r"
    assert policy.classify("b", {"day": "2020-13-45"}).rule == "d"


YAML_BITS = [
    "team: t\n",
    "rules:",
    " - ",
    "[",
    "]",
    "{",
    "}",
    ": ",
    ", ",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!timestamp ",
    "!!null ",
    "!!str ",
    "&a ",
    "*a",
    "<<: ",
    "\n",
    "  ",
    "abc",
    "9" * 30,
    "0x",
    "1:2",
    "2020-13-45",
    "'",
    '"',
    "#",
    "---\n",
    "? ",
    "|\n",
    "~",
    ".nan",
    "\t",
    "\x00",
    "\ufeff",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(YAML_BITS), max_size=40))
def test_any_text_is_a_policy_or_a_policy_error(bits: list[str]) -> None:
    """Whatever text the loader gets, the only thing it may raise is a PolicyError."""
    with contextlib.suppress(PolicyError):
        policy_from_text("".join(bits), source="t.yaml")


def test_live_policies_never_wait_on_a_fifo_that_appears_in_the_folder(tmp_path: Path) -> None:
    """The server's reload hashes files through the same reader: a FIFO dropped in later is its team's error."""
    (tmp_path / "good.yaml").write_text("team: good\nrules:\n  - {name: r, tools: [a], class: read}\n")
    live = LivePolicies(tmp_path, every=0)
    os.mkfifo(tmp_path / "pipe.yaml")
    current = live.current()
    assert set(current.policies) == {"good"}
    assert "named pipe (FIFO)" in current.errors["pipe"].fields["reason"]
