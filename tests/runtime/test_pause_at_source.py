"""Pause at the source: a paused team opens no new run, so whatever feeds it work (a schedule, a webhook handler)
stops there; the error names the pause, its reason and the team's owners, and nothing is recorded for the run."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
from runtime_support import Driver, Recorder

from guard import CallDenied, Guard, TeamPaused


def test_a_paused_team_refuses_a_new_run_naming_the_pause_and_its_owners_and_records_nothing(
        make_guard: Callable[..., Guard], driver: Driver) -> None:
    guard = make_guard(log_level="error")
    pause_id = guard.ledger.pause("team", "onboarding", reason="invoices doubled", by="ops-lead")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with pytest.raises(TeamPaused) as refused, driver.run(guard, "onboarding", run_id="nightly-sync") as run:
        run.call(find, email="ada@example.com")
    err = refused.value
    assert (err.team, err.pause_id, err.reason, err.paused_by) == ("onboarding", pause_id, "invoices doubled",
                                                                   "ops-lead")
    assert err.owners == ["ops-lead", "finance"] and err.run_id == "nightly-sync"
    assert f"pause {pause_id}" in str(err) and "guard unpause --team onboarding" in str(err)
    assert pickle.loads(pickle.dumps(err)).fields == err.fields  # crosses a worker boundary intact
    assert body.calls == [] and guard.ledger.get_run("nightly-sync") is None


def test_once_the_pause_is_lifted_the_same_run_opens_and_runs(make_guard: Callable[..., Guard],
                                                               driver: Driver) -> None:
    guard = make_guard(log_level="error")
    guard.ledger.pause("team", "onboarding", reason="incident 7", by="ops-lead")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with pytest.raises(TeamPaused), driver.run(guard, "onboarding", run_id="evt-1"):
        pass
    guard.ledger.unpause("team", "onboarding", by="ops-lead", reason="fixed")
    with driver.run(guard, "onboarding", run_id="evt-1") as run:
        run.call(find, email="ada@example.com")
    assert len(body.calls) == 1


def test_a_run_open_before_the_pause_may_be_entered_but_the_brakes_deny_its_calls(
        make_guard: Callable[..., Guard], driver: Driver) -> None:
    guard = make_guard(log_level="error")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, "onboarding", run_id="evt-2") as run:
        run.call(find, email="ada@example.com")
        guard.ledger.pause("team", "onboarding", reason="incident 8", by="ops-lead")
        with pytest.raises(CallDenied, match="incident 8"):
            run.call(find, email="grace@example.com")
    assert len(body.calls) == 1


def test_a_tool_pause_or_another_teams_pause_leaves_new_runs_open(make_guard: Callable[..., Guard],
                                                                  driver: Driver) -> None:
    guard = make_guard(log_level="error")
    guard.ledger.pause("tool", "email.*", reason="bounces", by="ops-lead", team="onboarding")
    guard.ledger.pause("team", "growth", reason="other team", by="ops-lead")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, "onboarding") as run:
        run.call(find, email="ada@example.com")
    assert len(body.calls) == 1
