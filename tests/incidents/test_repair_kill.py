"""A repair killed midway (a real process, SIGKILL at a crash point of the repair loop) resumes without repeating a
call: the record whose repair had completed is found by its key, and nothing runs twice in the other system."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from bad_run_support import REPO, BadRun

from guard.incidents import RecordFilter, Scope
from guard.incidents.repair import repair_run_id
from guard.ledger import CallState


def _repair(ledger_url: str, state: Path, inc: str, sample: int, crash: str | None) -> int:
    env = {**os.environ, "GUARD_BAD_RUN_STATE": str(state), "GUARD_OPERATOR": "olga", "GUARD_DEMO_LOG": "error"}
    env.pop("GUARD_CRASH_AT", None)
    if crash is not None:
        env["GUARD_CRASH_AT"] = crash
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "guard",
            "incident",
            "repair",
            inc,
            "--app",
            "examples.bad_run.agent:app",
            "--sample",
            str(sample),
            "--db",
            ledger_url,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert crash is not None or done.returncode == 0, done.stderr
    return done.returncode


@pytest.mark.parametrize("point", ["before_repair", "after_repair"])
def test_a_repair_killed_at_a_crash_point_resumes_without_repeating_a_call(
    bad_run: BadRun, ledger_url: str, tmp_path: Path, point: str
) -> None:
    book, ledger = bad_run.book, bad_run.guard.ledger
    inc = book.open(Scope(source_event_ids=(bad_run.event,)), title="t", opened_by="olga").incident_id
    book.tag(inc, RecordFilter(system="crm"), "wrong", by="rita")
    book.tag(inc, RecordFilter(system="mail"), "wrong", by="rita")
    book.snapshot(inc, tmp_path / "snap.jsonl", by="olga")
    effects = bad_run.tools.crm.total_writes() + bad_run.tools.mail.total_changes()

    assert _repair(ledger_url, bad_run.state, inc, 6, f"{point}@3") == -signal.SIGKILL
    records = book.radius(inc).records
    assert [r.state for r in records].count(CallState.ROLLED_BACK) == 2
    assert [r.state for r in records].count(CallState.ROLLING_BACK) == 1
    ran = 3 if point == "after_repair" else 2
    assert bad_run.tools.crm.total_writes() + bad_run.tools.mail.total_changes() == effects + ran

    _repair(ledger_url, bad_run.state, inc, 6, None)
    records = book.radius(inc).records
    repaired = [r for r in records if r.state == CallState.ROLLED_BACK]
    assert len(repaired) == 8 and not any(r.state == CallState.ROLLING_BACK for r in records)
    assert bad_run.tools.crm.total_writes() + bad_run.tools.mail.total_changes() == effects + 8
    calls = ledger.calls_of(repair_run_id(inc, "contacts"))
    assert len(calls) == 8 and all(c.state == CallState.COMPLETED for c in calls)
    assert sorted(c.compensates_call_id or "" for c in calls) == sorted(r.call_id for r in repaired)
