"""CLI options and arguments that take a fixed set of values, for every command there is: a value outside the set
is a usage error (exit 2) naming the allowed values, before any ledger is opened; the help names the same values; a
number outside its range is a usage error too.

The options are found by walking the real click tree of `guard` and reading each parameter's parser
(`guard.cli.choices.Choices`), so a filter added later is checked too; a walk over the names that say "a fixed set"
(`state`, `verdict`, `judged`, `log_level`) checks that none of them is a free text.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import typer.main
import uvicorn.config
from typer.core import TyperGroup
from typer.testing import CliRunner

from guard.cli import app
from guard.cli.choices import LOG_LEVELS, Choices

ROOT = typer.main.get_command(app)
FIXED_NAMES = {"state", "verdict", "judged", "log_level"}


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(command, TyperGroup):
        return [found for name, sub in sorted(command.commands.items()) for found in _commands(sub, (*path, name))]
    return [(path, command)]


def _choices(command: Any) -> dict[str, Choices]:
    """The command's parameters (by name) whose parser is a fixed set."""
    out: dict[str, Choices] = {}
    for name, p in inspect.signature(command.callback, eval_str=True).parameters.items():
        for meta in getattr(p.annotation, "__metadata__", ()):
            if isinstance(getattr(meta, "parser", None), Choices):
                out[name] = meta.parser
    return out


CHOICES = [
    (path, param, _choices(command)[param.name])
    for path, command in _commands(ROOT)
    for param in command.params
    if param.name in _choices(command)
]
IDS = [f"{' '.join(path)} {param.name}" for path, param, _ in CHOICES]


def _argv(path: tuple[str, ...], param: Any, value: str) -> list[str]:
    """The command line that gives `value` to `param` (any text for the arguments before it)."""
    if param.param_type_name == "argument":
        command = dict(_commands(ROOT))[path]
        before = [p for p in command.params if p.param_type_name == "argument"]
        return [*path, *["x"] * before.index(param), value]
    return [*path, param.opts[0], value]


def test_the_walk_finds_the_fixed_set_options_of_the_commands() -> None:
    """The walk sees the filters it must (so an empty walk cannot pass the tests below)."""
    assert {"runs list state", "approvals list state", "incident list state", "incident tag verdict"} <= set(IDS)
    assert {"incident tag state", "incident tag judged", "notifications list state", "serve log_level"} <= set(IDS)


def test_no_option_named_for_a_fixed_set_is_a_free_text() -> None:
    """Every parameter called state / verdict / judged / log_level, in every command, has a fixed-set parser."""
    free = [
        f"{' '.join(path)} {param.name}"
        for path, command in _commands(ROOT)
        for param in command.params
        if param.name in FIXED_NAMES and param.name not in _choices(command)
    ]
    assert free == []


@pytest.mark.parametrize(("path", "param", "choices"), CHOICES, ids=IDS)
def test_a_value_outside_the_set_is_a_usage_error_naming_every_allowed_value(
    path: tuple[str, ...], param: Any, choices: Choices, tmp_path: Path
) -> None:
    """`zzz` for the parameter: exit 2, and the error names each value of the set; no ledger file is made."""
    result = CliRunner().invoke(app, _argv(path, param, "zzz"), env={"GUARD_DATABASE_URL": str(tmp_path / "g.db")})
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert f"'zzz' is not a {choices.what}: use one of {', '.join(choices.values())}" in flat
    assert not (tmp_path / "g.db").exists()


@pytest.mark.parametrize(("path", "param", "choices"), CHOICES, ids=IDS)
def test_the_help_names_every_value_of_the_set(path: tuple[str, ...], param: Any, choices: Choices) -> None:
    """The option's help lists what it takes, so nobody has to guess and be refused first."""
    result = CliRunner().invoke(app, [*path, "--help"])
    flat = " ".join(result.output.split())
    assert all(value in flat for value in choices.values()), (param.name, flat)


def test_the_log_levels_are_uvicorns_own() -> None:
    """`guard serve --log-level` takes exactly what uvicorn takes (kept in the CLI so its help needs no server)."""
    assert list(LOG_LEVELS.values()) == list(uvicorn.config.LOG_LEVELS)


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "list", "--limit", "0"],
        ["runs", "list", "--limit", "-5"],
        ["runs", "list", "--limit", "10001"],
        ["notifications", "list", "--limit", "0"],
        ["pauses", "--last", "-1"],
        ["incident", "repair", "inc_x", "--app", "m:g", "--sample", "0"],
        ["serve", "--port", "70000"],
    ],
    ids=" ".join,
)
def test_a_number_outside_its_range_is_a_usage_error(argv: list[str], tmp_path: Path) -> None:
    """Zero, negative and too large counts and ports are refused with exit 2 naming the range."""
    result = CliRunner().invoke(app, argv, env={"GUARD_DATABASE_URL": str(tmp_path / "g.db")})
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output
