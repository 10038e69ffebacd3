"""What every `guard` command shares: the --db / --policies / --json options, output, and error exits.

Exit codes: 0 ok, 1 a check failed or the action was refused, 2 usage error (bad arguments or set-up).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from contextvars import ContextVar
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

from guard.errors import ConfigurationError, GuardError
from guard.printable import printable
from guard.spans import format_span

if TYPE_CHECKING:  # imported where used: `guard policy ...` never loads the ledger
    from guard.ledger import Ledger

__all__ = [
    "AppOption",
    "By",
    "DbOption",
    "JsonFlag",
    "PoliciesDir",
    "Who",
    "ago",
    "echo",
    "emit",
    "fail",
    "guarded_command",
    "load_app",
    "open_ledger",
    "operator_name",
    "policy_dir",
    "when",
]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Ledger URL or SQLite file.", show_default="$GUARD_DATABASE_URL or ./guard.db"),
]
PoliciesDir = Annotated[
    Path | None,
    typer.Option("--policies", help="Folder of <team>.yaml files.", show_default="$GUARD_POLICY_DIR or ./policies"),
]

Who = Annotated[str | None, typer.Option("--as", help="Who acts.", show_default="$GUARD_OPERATOR or $USER")]
# The same person as `Who`, for commands that record who made or revoked something (`guard tokens ...`).
By = Annotated[
    str | None, typer.Option("--by", help="Who acts (kept in the ledger).", show_default="$GUARD_OPERATOR or $USER")
]

AppOption = Annotated[
    str,
    typer.Option(
        "--app",
        help="The agent's Guard, as module:attribute (a Guard, or a function returning one): "
        "its tools, compensations and reconcile checks, e.g. examples.onboarding.agent:app.",
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def policy_dir(option: Path | None) -> Path:
    return option or Path(os.environ.get("GUARD_POLICY_DIR") or "policies")


def emit(data: Any) -> None:
    """Print `data` as JSON (which escapes control characters itself)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def echo(line: str = "", *, err: bool = False) -> None:
    """Print one line for a person. Values in it come from agents and tools, so control characters are
    escaped (`guard.printable`): a newline in a tool name cannot fake a row, nor an ESC sequence reach the
    terminal. Every text output of the CLI goes through here; a multi-line block is one call per line."""
    typer.echo(printable(line), err=err)


def fail(message: str, code: int = 1) -> NoReturn:
    echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# The ledgers the running command opened, closed when it ends (set by `guarded_command`).
_opened: ContextVar[list[Ledger] | None] = ContextVar("guard_cli_opened_ledgers", default=None)


def open_ledger(db: str | None) -> Ledger:
    """The ledger for a command that reads or decides: it must exist already (no silent new file).

    Closed when the command ends (see `guarded_command`), so a command run in-process, as a test or a host
    program runs it, leaves no connection to a ledger server open behind it."""
    from guard.ledger import Ledger, resolve_url, sqlite_path

    url = resolve_url(db)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        fail(
            f"no ledger at {path}: pass --db or set GUARD_DATABASE_URL (an agent run creates it; "
            "`guard db upgrade` creates an empty one)",
            2,
        )
    ledger = Ledger(url)
    opened = _opened.get()
    if opened is not None:
        opened.append(ledger)
    return ledger


def guarded_command(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn Guard errors into one clear line and an exit code instead of a traceback; close the ledgers the
    command opened (`open_ledger`) when it ends, however it ends."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _opened.set([])
        try:
            return fn(*args, **kwargs)
        except ConfigurationError as err:
            fail(str(err), 2)
        except GuardError as err:
            fail(str(err), 1)
        finally:
            for ledger in _opened.get() or []:
                ledger.close()
            _opened.reset(token)

    return wrapper


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")  # the local time


def ago(ts: float, now: float) -> str:
    """`3h 59m ago`, or `in 3h 59m` for a time ahead (two units, never rounded up: see `format_span`)."""
    text = format_span(abs(now - ts))
    return f"{text} ago" if now >= ts else f"in {text}"


def operator_name(who: str | None) -> str:
    """Who acts: `--as` (or `--by`), else $GUARD_OPERATOR, else $USER."""
    return who or os.environ.get("GUARD_OPERATOR") or os.environ.get("USER") or "operator"


def load_app(spec: str, db: str | None) -> Any:
    """Import `module:attribute` and return the Guard it names (calling a factory with `db` when it takes one)."""
    import importlib
    import inspect
    import sys

    from guard.runtime import Guard

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        fail(f"--app must be module:attribute, not {spec!r}", 2)
    sys.path.insert(0, os.getcwd())
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        fail(f"cannot load --app {spec}: {exc}", 2)
    if not isinstance(target, Guard) and callable(target):
        params = inspect.signature(target).parameters
        target = target(db=db) if "db" in params else target()
    if not isinstance(target, Guard):
        fail(f"--app {spec} is not a Guard (nor a function returning one)", 2)
    return target
