"""Shared fixtures: a real SQLite ledger file in tmp_path, at the schema revision this code needs.

Migrating a fresh file costs ~0.25 s, so the migration runs once per session into a template file and each
test gets a byte copy of it (still a real SQLite file of its own). `tests/ledger/test_database.py` covers
migrating a brand-new file on first use.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.ledger import Ledger, upgrade


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_path(tmp_path: Path, migrated_template: Path) -> Path:
    """A migrated ledger file of this test's own, not yet opened."""
    path = tmp_path / "guard.db"
    shutil.copyfile(migrated_template, path)
    return path


@pytest.fixture
def ledger(db_path: Path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{db_path}")
    try:
        yield led
    finally:
        led.close()
