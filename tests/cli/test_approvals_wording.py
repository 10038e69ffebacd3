"""What `guard approvals` tells a reviewer is true: the time left to the minute, and whether the call may run now
(a pause holds an approved call until it is lifted). In-process through typer's runner, on a real ledger file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guard import ApprovalPending, Guard
from guard.cli import app
from guard.ledger import Ledger
from guard.spans import format_span

POLICY = """\
team: pay
reviewers: {rita: [finance]}
rules:
  - name: refund
    tools: [billing.refund]
    class: compensable
    approval: {roles: [finance], expires_after: 4h}
"""


def _refund(**kw: object) -> dict[str, object]:
    return dict(kw)


@pytest.fixture
def waiting(tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Guard, str]]:
    """A refund waiting for finance's approval, which expires 4 hours after it was asked."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "pay.yaml").write_text(POLICY)
    monkeypatch.setenv("GUARD_POLICY_DIR", str(policies))
    guard = Guard(policies=policies, db=str(db_path), actor="agent", approval="defer", log_level="error")
    tool = guard.tool(_refund, name="billing.refund")
    with pytest.raises(ApprovalPending) as pending, guard.run("pay"):
        tool(invoice_id="inv_1")
    try:
        yield guard, pending.value.approval_id
    finally:
        guard.close()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(14399, "3h 59m"), (7200, "2h"), (95, "1m 35s"), (40, "40s"), (90061, "1d 1h"), (0, "0s"), (-5, "0s")],
)
def test_a_span_reads_in_its_two_largest_units_and_is_never_rounded_up(seconds: float, shown: str) -> None:
    assert format_span(seconds) == shown


def test_approvals_list_and_show_give_the_time_left_to_the_minute(waiting: tuple[Guard, str], db_path: Path) -> None:
    _, approval_id = waiting
    runner = CliRunner()
    listed = runner.invoke(app, ["approvals", "list", "--db", str(db_path)])
    assert listed.exit_code == 0, listed.output
    assert "expires in 3h 59m" in listed.output  # not "in 3h" with 3h59m left
    shown = runner.invoke(app, ["approvals", "show", approval_id, "--db", str(db_path)])
    assert "(in 3h 59m)" in shown.output


def test_approving_a_call_a_pause_holds_says_it_runs_when_the_pause_is_lifted(
    ledger: Ledger, waiting: tuple[Guard, str], db_path: Path
) -> None:
    _, approval_id = waiting
    ledger.pause("team", "pay", reason="incident 42", by="oncall")
    runner = CliRunner()
    done = runner.invoke(app, ["approvals", "approve", approval_id, "--as", "rita", "--db", str(db_path)])
    assert done.exit_code == 0, done.output
    assert "may run now" not in done.output
    assert "team pay is paused by oncall: incident 42" in done.output
    assert "runs when the pause is lifted" in done.output
