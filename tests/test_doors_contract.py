"""One door per role: adapters and examples never reach Guard's ledger, and what Guard shows of it is read-only.

Guard's own operator tooling takes the whole ledger with `guard.runtime.doors.ledger_of`; an adapter or an example
uses Guard's doors (`call_record`, `calls_of`, `approvals`, `decide`, ...). pyright strict makes a write through
`Guard.ledger` a type error; this file pins the type and keeps adapters and examples off the attribute altogether.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from guard import Guard
from guard.ledger import Ledger, ReadsPort

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("adapters", "examples")


def reaches_for_the_ledger(path: Path) -> list[str]:
    """Where a file touches `.ledger` on anything, imports `guard.ledger` or the `Ledger` class, or `ledger_of`."""
    found: list[str] = []
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        where = f"{shown}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr == "ledger":
            found.append(f"{where}: .ledger")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == "ledger"
        ):
            found.append(f"{where}: {node.func.id}(..., 'ledger')")
        elif isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.startswith("guard.ledger")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "guard.ledger" or node.module.startswith("guard.ledger."):
                found.append(f"{where}: from {node.module} import ...")
            elif node.module.startswith("guard"):
                found += [f"{where}: {a.name}" for a in node.names if a.name in ("Ledger", "ledger", "ledger_of")]
        elif isinstance(node, ast.Name) and node.id == "ledger_of":
            found.append(f"{where}: ledger_of")
    return found


def test_no_adapter_or_example_touches_a_guards_ledger_or_imports_the_ledger() -> None:
    files = [p for folder in FOLDERS for p in sorted((REPO / folder).rglob("*.py")) if "node_modules" not in p.parts]
    assert len(files) > 20  # the folders are where this test thinks they are
    assert [hit for p in files for hit in reaches_for_the_ledger(p)] == []


@pytest.mark.parametrize(
    "source",
    [
        "guard.ledger.decide('a', reviewer='r', decision='approve', reviewer_roles=frozenset())",
        "self.guard.path.ledger.pause('team', 't', reason='r', by='b')",
        "getattr(guard, 'ledger')",
        "from guard.ledger import Ledger",
        "from guard import Ledger",
        "import guard.ledger.store",
        "from guard.runtime.doors import ledger_of",
    ],
)
def test_the_check_finds_each_way_of_reaching_for_the_ledger(tmp_path: Path, source: str) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source + "\n")
    assert reaches_for_the_ledger(path) != []


def test_guards_public_ledger_is_the_read_port_which_writes_nothing() -> None:
    prop = typing.cast(property, Guard.__dict__.get("ledger") or Guard.ledger)  # pyright: ignore[reportUnknownMemberType]
    assert prop.fget is not None
    assert typing.get_type_hints(prop.fget)["return"] is ReadsPort
    writes = {"decide", "withdraw", "pause", "unpause", "offer", "open_run", "complete", "fail", "claim", "conns"}
    assert writes & set(dir(Ledger)) == writes - {"conns"}  # the whole ledger has them ...
    assert writes & set(dir(ReadsPort)) == set()  # ... its read port has none
