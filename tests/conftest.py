"""Shared fixtures: a real ledger at the schema revision this code needs, on a SQLite file and on PostgreSQL.

Migrating a fresh ledger costs ~0.25 s, so the migration runs once per session into a template (a SQLite file, a
PostgreSQL template database) and each test gets a copy of it of its own (a byte copy of the file; `CREATE
DATABASE ... TEMPLATE` on the server). `tests/ledger/test_database.py` covers migrating a brand-new ledger.

Backends: a test that asks for `ledger`, `ledger_url` or a fixture built on them (`make_guard`) runs once per
backend, unless it also asks for `db_path` (it reads or edits the SQLite file itself) or is marked
`sqlite_only`. PostgreSQL is a throwaway cluster of the session's own (`tests/pg_cluster.py`, server binaries from
`.ci/ensure-postgres`, which `make test` runs). `GUARD_TEST_BACKENDS=sqlite` runs the SQLite half alone.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_cluster import PgCluster, server_bin_dir

from guard.ledger import Ledger, upgrade
from guard.ledger.database import sqlite_path

BACKENDS = tuple(os.environ.get("GUARD_TEST_BACKENDS", "sqlite,postgres").split(","))
PG_TEMPLATE = "guard_template"
_database_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: the test reads or edits the SQLite file beside the ledger")
    config.addinivalue_line(
        "markers",
        "tampers: the test edits a ledger by hand; its ledgers need not verify (`_ledgers_verify_when_closed`)",
    )
    config.addinivalue_line(
        "markers",
        "operators: the approval service reads a copy of the demo policies in which olga holds the `operator` role "
        "and the welcome-email rule has owners of its own (tests/server/conftest.py `service_policies`)",
    )


@pytest.fixture(autouse=True)
def _ledgers_verify_when_closed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every SQLite ledger a test closes must pass `guard ledger verify`'s checks (guard.ledger.audit): a write of
    Guard's own that changes a covered row without its claim, or breaks a chain, fails the test that made it,
    whatever the test was about. A test that edits a ledger by hand says so: `@pytest.mark.tampers`."""
    if request.node.get_closest_marker("tampers"):
        yield
        return
    found: list[str] = []
    real_close = Ledger.close

    def close(self: Ledger) -> None:
        if sqlite_path(self.url) is not None and not getattr(self.conns, "_closed", True):
            try:
                report = self.verify_chain()
            except Exception:  # noqa: BLE001 (a ledger a test broke on purpose, or already gone: not this check's)
                report = None
            if report is not None and not report.ok:
                found.append(f"{self.url}: {report.found} finding(s), first: {report.problem}")
        real_close(self)

    monkeypatch.setattr(Ledger, "close", close)
    yield
    assert not found, "a ledger Guard wrote does not verify (mark the test `tampers` if it edits one by hand):\n" + (
        "\n".join(found)
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    sqlite_only = "db_path" in metafunc.fixturenames or metafunc.definition.get_closest_marker("sqlite_only")
    backends = [b for b in BACKENDS if b == "sqlite" or not sqlite_only]
    metafunc.parametrize("backend", backends)


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server of this session's own, with a migrated template database; removed at the end."""
    bin_dir = server_bin_dir()
    if bin_dir is None:
        pytest.fail(
            "no PostgreSQL server binaries: run .ci/ensure-postgres (make test does), "
            "or GUARD_TEST_BACKENDS=sqlite to run the SQLite half alone"
        )
    cluster = PgCluster(bin_dir).start()
    try:
        upgrade(cluster.create_database(PG_TEMPLATE))
        yield cluster
    finally:
        cluster.remove()


def _sqlite_copy(tmp_path: Path, template: Path) -> Path:
    path = tmp_path / "guard.db"
    if not path.exists():
        shutil.copyfile(template, path)
    return path


@pytest.fixture
def db_path(tmp_path: Path, migrated_template: Path) -> Path:
    """A migrated SQLite ledger file of this test's own, not yet opened (the test then runs on SQLite only)."""
    return _sqlite_copy(tmp_path, migrated_template)


@pytest.fixture
def ledger_url(backend: str, tmp_path: Path, migrated_template: Path, request: pytest.FixtureRequest) -> str:
    """A migrated ledger of this test's own on `backend`, as a URL."""
    if backend == "sqlite":
        return f"sqlite:///{_sqlite_copy(tmp_path, migrated_template)}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t{os.getpid()}_{next(_database_numbers)}", template=PG_TEMPLATE)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    led = Ledger(ledger_url)
    try:
        yield led
    finally:
        led.close()
