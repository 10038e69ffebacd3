"""An incident's repair killed in its loop (SIGKILL at each hit of its crash points) and resumed by a fresh worker:
every charge judged wrong is refunded once, the ledger and the witness agree, and at the points outside the
refund's call no refund reaches the witness twice. On both backends; part of the campaign (`make chaos`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.repairs import EVENTS, REPAIR_POINTS, repair_kill


@pytest.mark.chaos
@pytest.mark.parametrize("nth", range(1, len(EVENTS) + 1))
@pytest.mark.parametrize("point", sorted(REPAIR_POINTS))
def test_a_repair_killed_in_its_loop_resumes_and_refunds_each_wrong_charge_once(
    point: str, nth: int, tmp_path: Path, ledger_url: str
) -> None:
    kills, check = repair_kill(point, nth, url=ledger_url)(tmp_path / "lab")
    assert kills == 1
    assert check.violations == [], "; ".join(f"{v.kind}: {v.detail}" for v in check.violations)
    assert check.effect_states["rolled_back"] == len(EVENTS) and check.repeated_repairs == 0
