"""The campaign's backends one after the other, in either order: each backend's labs get a migrated ledger of
their own, never one that the backend before removed (`--backend postgres,sqlite` once crashed on a stale
SQLite template path)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from guard.ledger import CallState, Ledger
from tests.chaos.campaign import ledgers
from tests.chaos.harness import Lab


@pytest.mark.skipif(
    "postgres" not in os.environ.get("GUARD_TEST_BACKENDS", "postgres"),
    reason="both backends in turn: GUARD_TEST_BACKENDS has no postgres",
)
@pytest.mark.parametrize("order", [("postgres", "sqlite"), ("sqlite", "postgres")], ids="-then-".join)
def test_each_backend_in_either_order_gives_its_labs_an_empty_migrated_ledger_of_their_own(
    tmp_path: Path, order: tuple[str, str]
) -> None:
    for backend in order:
        work = tmp_path / backend
        with ledgers(work, backend):
            lab = Lab(work / "lab")
            assert lab.url is not None
            assert lab.url.startswith("postgresql" if backend == "postgres" else "sqlite")
            ledger = Ledger(lab.url)
            try:
                assert ledger.calls_in_state(tuple(CallState)) == []
            finally:
                ledger.close()
        shutil.rmtree(work)  # as the campaign removes each backend's folder before the next
