"""The bench's comparison rows (#12's "before" and "without"): Guard's `append_events` replaced by a stand-in that
must take every argument the ledger passes, or `make bench` measures nothing but the stand-in's TypeError."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.guard_cases import POLICY_DIR, with_global_chain, without_tamper_evidence
from guard import Guard


@pytest.mark.tampers  # a ledger written this way does not verify, by design
@pytest.mark.parametrize("written_by", [with_global_chain, without_tamper_evidence])
def test_a_guarded_run_goes_through_the_benchs_stand_in_for_the_audit_trail(
    written_by: Callable[[], contextlib.AbstractContextManager[None]], tmp_path: Path
) -> None:
    def nothing(i: int) -> None:
        return None

    guard = Guard(policies=str(POLICY_DIR), db=f"sqlite:///{tmp_path / 'bench.db'}", log_level="error")
    noop = guard.tool(nothing, name="bench.noop")
    try:
        with written_by():
            for n in range(2):
                with guard.run("bench", source_event_id=f"evt-{n}") as run:
                    noop(i=n)
                assert [c.state for c in run.calls()] == ["completed"]
                assert run.record().state == "completed"
    finally:
        guard.close()
