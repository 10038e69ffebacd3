"""Chaos fixtures: a lab (a ledger on each backend + witness store) per test, and the `chaos` marker for the
big campaign.

The marker is registered here (pyproject's `--strict-markers` refuses unknown ones); tests marked `chaos`
are skipped unless the run selects them with `-m chaos`, so `make test` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Lab


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: the full kill campaign (slow); run with `pytest -m chaos`")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "chaos" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="the full kill campaign runs with `-m chaos` (or `make chaos`)")
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(skip)


@pytest.fixture
def lab(tmp_path: Path, ledger_url: str) -> Lab:
    """An empty lab of this test's own (on each backend): a migrated ledger and an empty witness store."""
    return Lab(tmp_path / "lab", url=ledger_url)
