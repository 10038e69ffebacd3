"""Options that take one of a fixed set of values (a run state, a call state, an incident state, a verdict, ...).

An unknown value is a usage error (exit 2) naming the allowed ones, before anything is opened: `guard runs list
--state zzz` never answers "no runs". The sets are the ledger's own types (`guard.ledger.RunState`, ...), the same the
approval service validates against (`guard.server.filters`); they are imported when a value is checked, because the
CLI starts without the ledger (tests/cli/test_cli_startup.py). Each option's help names the values; a test walks
every command and checks that the help names every value of its set (tests/cli/test_cli_fixed_sets.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import Enum
from typing import Any, get_args

from pydantic_core import PydanticCustomError

__all__ = [
    "APPROVAL_STATES",
    "CALL_STATES",
    "INCIDENT_STATES",
    "JUDGED",
    "LOG_LEVELS",
    "NOTICE_STATES",
    "RUN_STATES",
    "VERDICTS",
    "Choices",
]


@dataclass(frozen=True, slots=True)
class Choices:
    """A parser for `typer.Option(parser=...)`, whose ValueError typer shows as a usage error (exit 2).

    `source` is `module:attribute` naming an Enum, a Literal or a tuple of strings, read on first use; `extra` are
    values the command adds (`all`, `none`)."""

    what: str
    source: str
    extra: tuple[str, ...] = ()

    def values(self) -> tuple[str, ...]:
        module, _, attribute = self.source.partition(":")
        found: Any = getattr(importlib.import_module(module), attribute)
        if isinstance(found, type) and issubclass(found, Enum):
            names = tuple(str(member.value) for member in found)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType, reportUnknownMemberType]
        elif isinstance(found, tuple):
            names = tuple(str(v) for v in found)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        else:
            names = tuple(str(v) for v in get_args(found))
        return (*names, *self.extra)

    def __call__(self, text: str) -> str:
        allowed = self.values()
        if text not in allowed:
            # A ValueError that pydantic (under typer) shows as it is, without a "Value error, " before it.
            raise PydanticCustomError(
                "choice",
                "{text} is not a {what}: use one of {allowed}",
                {"text": repr(text), "what": self.what, "allowed": ", ".join(allowed)},
            )
        return text


RUN_STATES = Choices("run state", "guard.ledger:RunState")
CALL_STATES = Choices("call state", "guard.ledger:CallState")
APPROVAL_STATES = Choices("approval state", "guard.ledger:ApprovalState", extra=("all",))
INCIDENT_STATES = Choices("incident state", "guard.ledger:IncidentState")
NOTICE_STATES = Choices("notification state", "guard.ledger:NoticeState")
VERDICTS = Choices("verdict", "guard.incidents:VERDICTS")
JUDGED = Choices("verdict", "guard.incidents:VERDICTS", extra=("none",))
LOG_LEVELS = Choices("log level", "guard.cli.choices:_UVICORN_LEVELS")

# uvicorn's own (`uvicorn.config.LOG_LEVELS`), kept here so that `guard serve --help` needs no server import.
_UVICORN_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
