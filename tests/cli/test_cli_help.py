"""`guard <command> --help` shows every default and no value type on a flag, for every command there is.

The commands are found by walking the real click tree of `guard`, so a command added later is checked too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from guard.cli import app

ROOT = typer.main.get_command(app)


def _paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if isinstance(command, TyperGroup):
        for name, sub in sorted(command.commands.items()):
            found += _paths(sub, (*path, name))
    return found


def _command(path: tuple[str, ...]) -> Any:
    command: Any = ROOT
    for name in path:
        assert isinstance(command, TyperGroup)
        command = command.commands[name]
    return command


def _expected_default(param: Any) -> str | None:
    """The `[default: ...]` text the help must show for `param`, or None when it has no default to show."""
    if isinstance(param.show_default, str):
        return f"[default: ({param.show_default})]"
    if param.default is None or param.default == () or param.name == "help":
        return None
    if getattr(param, "is_bool_flag", False):
        if not param.secondary_opts:
            return None  # a plain flag: off unless given
        chosen = param.opts[0] if param.default else param.secondary_opts[0]
        return f"[default: {chosen.lstrip('-')}]"
    return f"[default: {param.default}"  # a range may follow: `[default: 50; 1<=x<=1000]`


COMMANDS = _paths(ROOT)


def test_the_walk_finds_every_group_and_command() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "policy validate", "runs show", "approvals approve", "serve", "db upgrade"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "guard")
def test_help_shows_the_defaults_and_no_swallowed_markup(path: tuple[str, ...]) -> None:
    """Defaults are printed as `[default: ...]`, nothing leaves a dangling " .", flags show no `<bool>`."""
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert not re.search(r"\s\.(\s|$)", text), text
    assert "<bool>" not in text
    flat = " ".join(text.split())
    for param in _command(path).params:
        expected = _expected_default(param)
        if expected is not None:
            assert expected in flat, (param.name, flat)
        help_text = getattr(param, "help", None) or ""
        assert "[default" not in help_text, f"{param.name}: put the default in show_default, not the help text"
