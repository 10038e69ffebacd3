"""`guard policy validate` starts with the policy code alone: no database stack, no server, no runtime.

It is the command a policy owner runs in an editor hook and CI on every save, so the process must not pay
for SQLAlchemy, FastAPI or the ledger it never opens. Measured by the modules a real run has loaded, in a
process of its own (a timing assertion would only measure the machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, runpy, sys
sys.argv = ["guard", *sys.argv[1:]]
try:
    runpy.run_module("guard", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

HEAVY = (
    "sqlalchemy",
    "sqlmodel",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "structlog",
    "tenacity",
    "rich",
    "guard.ledger",
    "guard.runtime",
    "guard.server",
    "guard.notify",
    "guard.logs",
)


def loaded_by(*args: str) -> tuple[int, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, check=False, cwd=REPO
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["code"], report["modules"]


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("files", [["policies/onboarding.yaml"], ["tests/policy/bad/syntax.yaml"]])
def test_policy_validate_loads_neither_the_ledger_nor_the_server(files: list[str]) -> None:
    """A valid and an invalid file alike are checked without importing the database, web or runtime stack."""
    code, modules = loaded_by("policy", "validate", *files)
    assert code == (0 if "onboarding" in files[0] else 1)
    assert "guard.policy" in modules
    assert heavy(modules) == []


def test_import_guard_alone_loads_only_the_errors() -> None:
    """`import guard` defers everything but the errors to first use; `guard.Guard` still works."""
    probe = (
        "import json, sys, guard; before = sorted(sys.modules); guard.Guard; "
        "print(json.dumps([before, sorted(sys.modules)]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    before, after = json.loads(result.stdout)
    assert heavy(before) == []
    assert "guard.runtime" in after
