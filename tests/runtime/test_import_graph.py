"""The runtime's import graph has no cycle: its modules form layers (the `guard.runtime` contract in pyproject.toml).

Run as a script to print the cycles: `.venv/bin/python -m tests.runtime.test_import_graph`.
"""

from __future__ import annotations

import grimp

PACKAGE = "guard.runtime"


def runtime_graph() -> dict[str, set[str]]:
    """Module -> the modules of `guard.runtime` it imports (imports under TYPE_CHECKING count: a cycle is a cycle)."""
    graph = grimp.build_graph("guard")
    inside = {m for m in graph.modules if m == PACKAGE or m.startswith(PACKAGE + ".")} - {PACKAGE}
    return {m: graph.find_modules_directly_imported_by(m) & inside for m in sorted(inside)}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every simple cycle of the graph, each once, starting at its smallest module."""
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                found.append([*path])
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for start in sorted(edges):
        walk(start, start, [start])
    return found


def test_the_runtime_modules_import_one_another_without_a_cycle() -> None:
    """No module of guard.runtime reaches itself through the modules it imports."""
    assert cycles(runtime_graph()) == []


if __name__ == "__main__":
    found = cycles(runtime_graph())
    modules = sorted({m for c in found for m in c})
    print(f"{PACKAGE}: {len(found)} import cycles through {len(modules)} modules")
    for c in found:
        print("  " + " -> ".join(m.removeprefix(PACKAGE + ".") for m in [*c, c[0]]))
