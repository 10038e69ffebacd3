"""Every team policy in this folder is valid and passes its own cases file."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.policy import load_policy, run_cases

HERE = Path(__file__).parent
POLICIES = sorted(p for p in HERE.glob("*.yaml") if not p.name.endswith(".cases.yaml"))


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_policy_loads_and_names_its_team(path: Path) -> None:
    assert load_policy(path).team == path.stem


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_policy_passes_its_cases(path: Path) -> None:
    report = run_cases(path)
    failures = [f"{r.name} (line {r.line}): {'; '.join(r.differences)} [{r.decision.reason}]" for r in report.failures]
    assert not failures, "\n".join(failures)
