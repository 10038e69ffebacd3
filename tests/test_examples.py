"""Every example the README names runs to its end offline, as its one command runs it, and its own checks hold
(each exits non-zero when a promise of its story breaks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("examples/onboarding/demo.py", "Done. Try `guard runs show"),
        ("examples/lead_funnel/run.py", "overhead per guarded call"),
        ("examples/booking/run.py", "rolled_back"),
        ("examples/lead_funnel_pydantic_ai/run.py", "no new effect"),
        ("examples/shared/run.py", "shared ledger: done"),  # make demo-shared: a PostgreSQL of its own, 4 processes
        ("examples/bad_run/run.py", "counts match"),
    ],
)
def test_the_example_runs_offline_and_its_checks_hold(script: str, says: str) -> None:
    env = {**os.environ, "GUARD_DEMO_LOG": "warning", "GUARD_DEMO_REVIEW": "cli", "GUARD_DEMO_PORT": "0"}
    done = subprocess.run(
        [sys.executable, script], cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert says in done.stdout
