"""A staged restart (`guard unpause --staged 1,10,100`): a stage lets that many calls through the pause, then the
pause holds until an owner confirms or a quiet period passes; after the last stage the pause is lifted. A failure,
an in-doubt call or a tripped stop rule during a stage pauses everything again at once. Every step is recorded."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from runtime_support import Driver, Recorder

from guard import CallDenied, CallFailed, Guard, GuardUsageError, TeamPaused
from guard.ledger import Ledger


def _restart(ledger: Ledger) -> dict[str, object]:
    [r] = ledger.restarts()
    return r


def test_each_stage_lets_its_calls_through_then_holds_until_confirmed_and_the_last_confirmation_lifts_the_pause(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    body = Recorder(result={"id": "c"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, "onboarding") as run:
        ledger.pause("team", "onboarding", reason="duplicates", by="ops-lead")
        ledger.start_restart("team", "onboarding", stages=[1, 2], by="ops-lead", reason="mapping fixed")
        with pytest.raises(GuardUsageError, match="has let 0 of 1 call"):  # nothing to confirm yet
            ledger.confirm_restart("team", "onboarding", by="ops-lead", reason="early")
        run.call(find, email="a@x.io")  # stage 1: one call
        with pytest.raises(CallDenied, match=r"staged restart \d+ holds after stage 1 of 1,2"):
            run.call(find, email="b@x.io")
        assert _restart(ledger)["state"] == "holding"
        with pytest.raises(GuardUsageError, match="needs a reason"):
            ledger.confirm_restart("team", "onboarding", by="ops-lead", reason=" ")
        assert ledger.confirm_restart("team", "onboarding", by="ops-lead", reason="one looked right") == "passing"
        run.call(find, email="c@x.io")
        run.call(find, email="d@x.io")  # stage 2: two calls
        with pytest.raises(CallDenied, match="holds after stage 2"):
            run.call(find, email="e@x.io")
        assert ledger.confirm_restart("team", "onboarding", by="ops-lead", reason="ten fine") == "done"
        run.call(find, email="f@x.io")  # normal volume
    assert [c["email"] for c in body.calls] == ["a@x.io", "c@x.io", "d@x.io", "f@x.io"]
    assert ledger.active_pauses() == []
    steps = [(e["by"], e["to"], e["stage"]) for e in ledger.restart_events(int(str(_restart(ledger)["id"])))]
    assert steps == [
        ("ops-lead", "passing", 1),
        ("guard", "holding", 1),
        ("ops-lead", "passing", 2),
        ("guard", "holding", 2),
        ("ops-lead", "done", 2),
    ]


def test_a_failure_during_a_stage_pauses_again_at_once_and_the_restart_is_recorded_failed(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    body = Recorder(result={"id": "c"}, errors=[RuntimeError("crm down")])
    find = driver.tool(guard, body, name="lab.halting_write")
    with driver.run(guard, "lab") as run:
        ledger.pause("team", "lab", reason="bad writes", by="ops-lead")
        ledger.start_restart("team", "lab", stages=[10], by="ops-lead", reason="fixed")
        with pytest.raises(CallFailed):
            run.call(find, record="r1")
    assert _restart(ledger)["state"] == "failed"
    assert [p["target"] for p in ledger.active_pauses()] == ["lab"]  # the pause holds everything again
    with driver.run(guard, "onboarding") as other:  # another team is not held
        other.call(driver.tool(guard, Recorder(result={}), name="crm.find_contact"), email="a@x.io")


def test_a_quiet_period_with_no_failure_moves_a_held_stage_on_without_a_confirmation(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    body = Recorder(result={"id": "c"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, "onboarding") as run:
        ledger.pause("tool", "crm.*", reason="stale", by="ops-lead", team="onboarding")
        ledger.start_restart(
            "tool", "crm.*", stages=[1, 1], by="ops-lead", reason="fixed", team="onboarding", quiet=600
        )
        run.call(find, email="a@x.io")
        with pytest.raises(CallDenied, match="on its own"):
            run.call(find, email="b@x.io")
        with ledger.conns.write() as cur:  # ten quiet minutes pass
            cur.execute("UPDATE restarts SET held_at = held_at - 601")
        run.call(find, email="b@x.io")  # stage 2 by itself
        with ledger.conns.write() as cur:
            cur.execute("UPDATE restarts SET held_at = held_at - 601")
        run.call(find, email="c@x.io")  # the last stage held quietly: the pause is lifted
    assert len(body.calls) == 3 and ledger.active_pauses() == []
    assert _restart(ledger)["state"] == "done"


def test_pausing_again_during_a_staged_restart_ends_it(ledger: Ledger) -> None:
    ledger.pause("team", "onboarding", reason="dupes", by="ops-lead")
    ledger.start_restart("team", "onboarding", stages=[1, 10], by="ops-lead", reason="fixed")
    ledger.pause("team", "onboarding", reason="dupes again", by="finance")
    assert _restart(ledger)["state"] == "failed"


def test_a_stage_letting_calls_through_lets_new_runs_open_and_a_held_stage_refuses_them_again(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    find = driver.tool(guard, Recorder(result={"id": "c"}), name="crm.find_contact")
    ledger.pause("team", "onboarding", reason="dupes", by="ops-lead")
    with pytest.raises(TeamPaused), driver.run(guard, "onboarding"):
        pass
    ledger.start_restart("team", "onboarding", stages=[1, 10], by="ops-lead", reason="fixed")
    with driver.run(guard, "onboarding") as run:
        run.call(find, email="a@x.io")
    with pytest.raises(TeamPaused, match="dupes"), driver.run(guard, "onboarding"):
        pass


def test_a_restart_that_passes_every_stage_lifts_the_pause_with_a_claim_so_the_ledger_still_verifies(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    find = driver.tool(guard, Recorder(result={"id": "c"}), name="crm.find_contact")
    ledger.pause("team", "onboarding", reason="dupes", by="ops-lead")
    ledger.start_restart("team", "onboarding", stages=[1], by="ops-lead", reason="fixed")
    with driver.run(guard, "onboarding") as run:
        run.call(find, email="a@x.io")
    assert ledger.confirm_restart("team", "onboarding", by="ops-lead", reason="fine") == "done"
    report = guard.ledger.verify_chain()
    assert report.ok, report.problem
