"""The front door: `guard.__all__` is pinned, and adapters and examples go through it only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import guard

REPO = Path(__file__).resolve().parents[1]

EXPORTED = [
    "ApprovalDecisionError",
    "ApprovalExpired",
    "ApprovalPending",
    "ApprovalTimeout",
    "ArgumentsRefused",
    "BridgedCall",
    "CallDenied",
    "CallFailed",
    "CallInDoubt",
    "CallOutcomeError",
    "CallRejected",
    "CallState",
    "CompensationKind",
    "ConfigurationError",
    "Decision",
    "Found",
    "FrameworkBridge",
    "FrameworkTools",
    "Guard",
    "GuardError",
    "GuardSignal",
    "GuardUsageError",
    "GuardedTool",
    "IdempotencyConflict",
    "IllegalTransition",
    "LeaseLost",
    "Ledger",
    "LedgerBusy",
    "LedgerError",
    "LedgerNotReady",
    "LedgerUnavailable",
    "NotFound",
    "OutcomeUnknown",
    "PolicyError",
    "PolicySet",
    "ReconcileContext",
    "RecoveryReport",
    "RollbackContext",
    "RunHandle",
    "RunNotRunning",
    "RunState",
    "SecretKeyMissing",
    "SideEffectClass",
    "TeamPaused",
    "ToolPaused",
    "Verdict",
    "__version__",
    "args_hash",
    "current_call",
    "current_run",
    "load_policy",
    "report_external_id",
    "trace_context",
]


def test_the_public_names_are_exactly_the_pinned_list_in_sorted_order() -> None:
    assert guard.__all__ == EXPORTED


@pytest.mark.parametrize("name", EXPORTED)
def test_every_public_name_is_importable_from_guard(name: str) -> None:
    module = importlib.import_module("guard")
    assert getattr(module, name) is not None


def test_every_public_error_is_a_guard_error() -> None:
    errors = [
        getattr(guard, n)
        for n in EXPORTED
        if isinstance(getattr(guard, n), type) and issubclass(getattr(guard, n), BaseException)
    ]
    assert errors and all(issubclass(e, guard.GuardError) for e in errors)


def guard_imports(path: Path) -> list[tuple[int, str]]:
    """Each `guard` name a file imports, as `module:name` (or the module alone for `import guard.x`)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and (node.module == "guard" or node.module.startswith("guard."))
        ):
            found.extend((node.lineno, f"{node.module}:{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend(
                (node.lineno, alias.name)
                for alias in node.names
                if alias.name == "guard" or alias.name.startswith("guard.")
            )
    return found


# Entry points of their own, with an `__all__`: the approval service (its extra), webhook signing for
# receivers, the fakes for tests, and incidents (after a bad run, for operators' scripts).
# guard.local_postgres: a PostgreSQL of its own for the tests, the benches and `make demo-shared` (its __all__).
PUBLIC_MODULES = ("guard.server", "guard.notify", "guard.testing", "guard.incidents", "guard.local_postgres")


def _public(what: str) -> bool:
    module, _, name = what.partition(":")
    if module == "guard":
        return name in EXPORTED or not name
    return module in PUBLIC_MODULES and name in importlib.import_module(module).__all__


def test_adapters_and_examples_use_only_public_names_of_guard() -> None:
    files = [p for folder in ("adapters", "examples") for p in sorted((REPO / folder).rglob("*.py"))]
    imports = {p: guard_imports(p) for p in files}
    if not any(imports.values()):
        pytest.skip("no adapter or example imports guard yet")
    private = [
        f"{p.relative_to(REPO)}:{line}: {what}"
        for p, found in imports.items()
        for line, what in found
        if not _public(what)
    ]
    assert private == []
    # adapters (shipped code) take the core's names from `guard` alone
    adapters = [what for p, found in imports.items() if p.is_relative_to(REPO / "adapters") for _, what in found]
    assert adapters and all(w == "guard" or w.startswith("guard:") for w in adapters)
