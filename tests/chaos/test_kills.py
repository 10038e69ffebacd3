"""Kill tests: the agent runs in a subprocess and dies by SIGKILL at a named crash point; a fresh worker
recovers and runs the same event again; then the ledger and the witness must agree (see `invariants.py`).

`make test` kills at the write-ahead points of each class (before the tool, after the effect, after the
return); every other point x tool pair, and the saga's points, run with `pytest -m chaos`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from guard.ledger import CallState
from tests.chaos.harness import KILL_POINTS, SAGA, TEAM, Lab, calibrate, kill_and_recover, poll, tool_of
from tests.chaos.invariants import Check
from tests.chaos.witness import Effect

Windows = dict[str, tuple[int, int]]
FAST_POINTS = frozenset({"before_tool", "after_effect", "after_return"})
TOOLS = ("witness.lookup", "witness.upsert", "witness.charge", "witness.message")
# Where a point cannot be reached: reads have no effect to kill after; only the approved call is `approved`.
UNREACHABLE = {
    ("after_effect", "witness.lookup"),
    ("after_approved", "witness.lookup"),
    ("after_approved", "witness.upsert"),
    ("after_approved", "witness.charge"),
    ("before_compensation", "*"),
    ("after_compensation", "*"),
}


@pytest.fixture(scope="session")
def windows(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path) -> Callable[[str, bool], Windows]:
    """Which hits of a crash point fall in which tool's step, from one clean calibration run per point."""
    cache: dict[tuple[str, bool], Windows] = {}

    def get(point: str, saga: bool) -> Windows:
        if (point, saga) not in cache:
            root = tmp_path_factory.mktemp(f"calibrate-{point}")
            Lab(root, base=migrated_template)  # the calibration's own copy of the ledger
            cache[(point, saga)] = calibrate(root, point, script=SAGA if saga else None)
        return cache[(point, saga)]

    return get


def _assert_clean(result: Check, what: str) -> None:
    assert result.violations == [], f"{what}: " + "; ".join(f"{v.kind}: {v.detail}" for v in result.violations)


def _matrix() -> list[object]:
    params: list[object] = []
    for point in KILL_POINTS:
        for tool in TOOLS:
            if (point, tool) in UNREACHABLE or (point, "*") in UNREACHABLE:
                continue
            marks = () if point in FAST_POINTS else (pytest.mark.chaos,)
            params.append(pytest.param(point, tool, marks=marks, id=f"{point}-{tool}"))
    return params


@pytest.mark.parametrize(("point", "tool"), _matrix())
def test_a_kill_at_each_point_of_each_tool_recovers_with_no_duplicate_no_lost_record_and_nothing_started(
    point: str, tool: str, windows: Callable[[str, bool], Windows], tmp_path: Path, migrated_template: Path
) -> None:
    before, after = windows(point, False)[tool]
    assert after > before, f"{point} is never reached in {tool}'s step"
    Lab(tmp_path, base=migrated_template)
    kill = kill_and_recover(tmp_path, point, before + 1, tool=tool)

    assert kill.first.killed, f"the agent was not killed at {point}@{before + 1}: {kill.first.stderr[-2000:]}"
    _assert_clean(kill.result, kill.describe())
    assert kill.resume.code == 0, kill.describe() + kill.resume.stderr[-2000:]
    assert kill.resume.output["run_state"] == "completed"
    assert (kill.result.effects, dict(kill.result.effect_states)) == (3, {"completed": 3})


@pytest.mark.chaos
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_during_a_failing_run_and_its_saga_recovers_with_the_charge_refunded_once(
    point: str, windows: Callable[[str, bool], Windows], tmp_path: Path, migrated_template: Path
) -> None:
    win = windows(point, True)
    total = max(end for _, end in win.values())
    if total == 0:
        pytest.skip(f"{point} is not reached when the message fails")
    for nth in range(1, total + 1):
        root = tmp_path / f"{point}-{nth}"
        Lab(root, base=migrated_template)
        kill = kill_and_recover(root, point, nth, tool=tool_of(win, nth), script=SAGA)
        assert kill.first.killed
        _assert_clean(kill.result, kill.describe())
        charges = [e for e in Lab(root).witness.effects() if e.kind == "charge"]
        assert all(e.undone_at is not None for e in charges), kill.describe()


def test_a_kill_inside_the_compensation_resumes_the_saga_and_refunds_the_charge_exactly_once(lab: Lab) -> None:
    lab = Lab(lab.root, script=SAGA)
    assert lab.run(crash="before_compensation@1").killed
    resume = lab.run(worker="w2", extra=("--recover",))

    _assert_clean(lab.check(), "killed before the refund")
    [charge] = [e for e in lab.witness.effects() if e.kind == "charge"]
    assert charge.undone_at is not None
    assert [a.outcome for a in lab.witness.attempts() if a.tool == "witness.refund"] == ["undone"]
    assert resume.output["recover"]["compensations"] == 1
    assert resume.output["run_state"] == "pending_review"  # the upsert has no compensation: it remains


def test_a_compensation_that_keeps_failing_marks_rollback_failed_and_halts_the_run_for_review(lab: Lab) -> None:
    lab = Lab(lab.root, script={**SAGA, "witness.refund": ["fail", "fail"]})
    result = lab.run()

    assert (result.code, result.output["run_state"]) == (2, "pending_review")
    with_ledger = lab.ledger()
    try:
        [charge] = [c for c in with_ledger.calls_of("chaos:evt-1") if c.tool == "witness.charge"]
        assert charge.state == "rollback_failed"
        record = with_ledger.get_run("chaos:evt-1")
        assert record is not None and record.requires_review
        assert "witness.refund" in (record.error_summary or "")
    finally:
        with_ledger.close()
    [effect] = [e for e in lab.witness.effects() if e.kind == "charge"]
    assert effect.undone_at is None  # nothing was undone, and the ledger says so
    check = lab.check()
    _assert_clean(check, "refund failed")
    assert check.effect_states["rollback_failed/pending_review"] == 1


def _charge_of(lab: Lab) -> list[Effect]:
    return [e for e in lab.witness.effects() if e.kind == "charge"]


def test_a_charge_that_hangs_past_its_timeout_is_in_doubt_and_reconciled_never_charged_twice(lab: Lab) -> None:
    release = lab.root / "release-charge"
    lab = Lab(lab.root, script={"witness.charge": [{"mode": "hang", "release": str(release), "seconds": 20}]})
    agent = lab.start(extra=("--amount", "1000000"))
    ledger = lab.ledger()
    try:
        poll(
            lambda: [c for c in ledger.calls_of("chaos:evt-1") if c.tool == "witness.charge" and c.state != "started"],
            what="the timed-out charge settled in the ledger",
        )
        release.touch()  # the provider answers late: the first attempt commits now
        first = agent.wait()
        resume = lab.run(worker="w2", extra=("--recover", "--amount", "1000000"))
        check = lab.check()
        _assert_clean(
            check, f"hang past timeout (agent {first.output.get('error_type')}, resume {resume.output.get('status')})"
        )
        assert len(_charge_of(lab)) == 1
        [charge] = [c for c in ledger.calls_of("chaos:evt-1") if c.tool == "witness.charge"]
        assert charge.state in ("completed", "in_doubt")
        if charge.state == "completed":
            assert charge.external_id_map["charge"] == _charge_of(lab)[0].effect_id
    finally:
        ledger.close()


@pytest.mark.parametrize("tool", ["witness.upsert", "witness.charge", "witness.message"])
def test_a_committed_effect_whose_response_was_lost_is_reconciled_never_applied_twice(tool: str, lab: Lab) -> None:
    lab = Lab(lab.root, script={tool: ["commit_then_drop"]})
    first = lab.run()
    resume = lab.run(worker="w2", extra=("--recover",))

    check = lab.check()
    _assert_clean(
        check,
        f"{tool} commit_then_drop: agent {first.output.get('error_type')}, resume "
        f"{resume.output.get('status')} {resume.output.get('error_type')}",
    )
    kind = {"witness.upsert": "contact", "witness.charge": "charge", "witness.message": "message"}[tool]
    assert len([e for e in lab.witness.effects() if e.kind == kind]) == 1
    assert check.effect_states.keys() <= {"completed", "in_doubt/pending_review"}


def _leases_ran_out(lab: Lab) -> bool:
    ledger = lab.ledger()
    try:
        started = ledger.calls_in_state((CallState.STARTED,))
        return bool(started) and all(
            c.lease_expires_at is not None and c.lease_expires_at < time.time() for c in started
        )
    finally:
        ledger.close()


def test_two_resumes_of_one_killed_run_at_once_apply_each_effect_once(lab: Lab) -> None:
    # The dead worker's lease is short; the two resumers take over only what its lease no longer holds (each
    # one's own claim is a fresh lease, so neither takes a call the other one is already running).
    assert lab.run(crash="before_tool@3", extra=("--lease-ttl", "0.3")).killed  # the charge is left started
    poll(lambda: _leases_ran_out(lab), what="the dead worker's lease ran out")
    a = lab.start(worker="w2", extra=("--recover", "--stale-after", "-1"))
    b = lab.start(worker="w3", extra=("--recover", "--stale-after", "-1"))
    results = [a.wait(), b.wait()]

    _assert_clean(lab.check(), "two resumes: " + json.dumps([r.output.get("status") for r in results]))
    assert sorted(e.kind for e in lab.witness.effects()) == ["charge", "contact", "message"]
    assert any(r.code == 0 for r in results)


def test_one_event_started_by_two_agents_at_once_uses_each_key_once(lab: Lab) -> None:
    a = lab.start(worker="w1")
    b = lab.start(worker="w2")
    results = [a.wait(), b.wait()]

    _assert_clean(lab.check(), "two agents: " + json.dumps([r.output.get("error_type") for r in results]))
    assert sorted(e.kind for e in lab.witness.effects()) == ["charge", "contact", "message"]
    assert any(r.code == 0 for r in results)


def test_a_zombie_worker_cannot_complete_a_call_another_worker_took_over(lab: Lab) -> None:
    release = lab.root / "release-zombie"
    lab = Lab(lab.root, script={"witness.charge": [{"mode": "hang", "release": str(release), "seconds": 30}]})
    zombie = lab.start(worker="zombie")
    try:
        poll(lambda: lab.witness.invocations("witness.charge") == 1, what="the zombie's charge reached the witness")
        os.kill(zombie.proc.pid, signal.SIGSTOP)
        takeover = lab.run(worker="w2", extra=("--recover",))
        assert takeover.code == 0, takeover.output
    finally:
        release.touch()
        os.kill(zombie.proc.pid, signal.SIGCONT)
    woke = zombie.wait()

    assert woke.code != 0 and woke.output.get("status") != "completed"
    ledger = lab.ledger()
    try:
        [charge] = [c for c in ledger.calls_of("chaos:evt-1") if c.tool == "witness.charge"]
        done = [e for e in ledger.events_of("chaos:evt-1") if e.call_id == charge.call_id and e.to_state == "completed"]
        assert charge.state == "completed" and [e.actor for e in done] != [] and "zombie" not in done[0].actor
    finally:
        ledger.close()
    [effect] = _charge_of(lab)
    assert charge.external_id_map["charge"] == effect.effect_id
    check = lab.check()
    # The zombie's request was in flight before the takeover: it lands late, and the witness's key absorbs it.
    late = [v for v in check.violations if v.kind == "blind_rerun" and f"pid {zombie.proc.pid}" in v.detail]
    assert len(late) <= 1
    _assert_clean(Check(violations=[v for v in check.violations if v not in late]), "zombie")


def _stage_calls(ledger_lab: Lab, restart: int) -> int:
    ledger = ledger_lab.ledger()
    try:
        with ledger.conns.read() as cur:
            cur.execute("SELECT COUNT(*) FROM restart_calls WHERE restart_id = ? AND stage = 0", (restart,))
            return int(cur.fetchone()[0])
    finally:
        ledger.close()


@pytest.mark.parametrize("crash", ["before_tool@2", "after_effect@1"])
def test_a_worker_killed_while_a_stage_of_a_staged_restart_is_open_recovers_without_exceeding_the_stage(
    lab: Lab, crash: str
) -> None:
    """The team is paused and a staged restart lets 2 calls through: the worker dies on the stage's second call
    (before its tool ran, or after its effect), a fresh worker recovers and runs the event again. The invariants
    hold, the stage let exactly its 2 calls through (the recovered call is not counted twice), the charge after
    them is held by the pause and never runs, and the restart holds for an owner's confirmation."""
    ledger = lab.ledger()
    try:
        ledger.pause("team", TEAM, reason="chaos: a bad deploy", by="ops-bot")
        restart = ledger.start_restart("team", TEAM, stages=[2, 10], by="ops-bot", reason="fix deployed")
    finally:
        ledger.close()
    first = lab.run(crash=crash)
    assert first.killed, f"the agent was not killed at {crash}: {first.stderr[-2000:]}"
    resume = lab.run(worker="w2", extra=("--recover",))

    _assert_clean(lab.check(), f"staged restart, killed at {crash}")
    assert (resume.code, resume.output.get("error_type")) == (2, "CallDenied"), resume.output
    assert sorted(e.kind for e in lab.witness.effects()) == ["contact"]  # the charge was held: it never ran
    assert _stage_calls(lab, restart) == 2
    ledger = lab.ledger()
    try:
        [state] = ledger.restarts()
        assert (state["stage"], state["passed"], state["state"]) == (0, 2, "holding")
        assert [p["target"] for p in ledger.active_pauses([TEAM])] == [TEAM]
    finally:
        ledger.close()
