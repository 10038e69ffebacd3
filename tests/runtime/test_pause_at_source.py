"""Pause at the source: a paused team opens no new run, so whatever feeds it work (a schedule, a webhook handler)
stops there; the error names the pause, its reason and the team's owners, and nothing is recorded for the run."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
from runtime_support import Driver, Recorder

from guard import CallDenied, Guard, TeamPaused, ToolPaused
from guard.ledger import Ledger


def test_a_paused_team_refuses_a_new_run_naming_the_pause_and_its_owners_and_records_nothing(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    pause_id = ledger.pause("team", "onboarding", reason="invoices doubled", by="ops-lead")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with pytest.raises(TeamPaused) as refused, driver.run(guard, "onboarding", run_id="nightly-sync") as run:
        run.call(find, email="ada@example.com")
    err = refused.value
    assert (err.team, err.pause_id, err.reason, err.paused_by) == (
        "onboarding",
        pause_id,
        "invoices doubled",
        "ops-lead",
    )
    assert err.owners == ["ops-lead", "finance"] and err.run_id == "nightly-sync"
    assert f"pause {pause_id}" in str(err) and "guard unpause --team onboarding" in str(err)
    assert pickle.loads(pickle.dumps(err)).fields == err.fields  # crosses a worker boundary intact
    assert body.calls == [] and guard.ledger.get_run("nightly-sync") is None


def test_once_the_pause_is_lifted_the_same_run_opens_and_runs(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    ledger.pause("team", "onboarding", reason="incident 7", by="ops-lead")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with pytest.raises(TeamPaused), driver.run(guard, "onboarding", run_id="evt-1"):
        pass
    ledger.unpause("team", "onboarding", by="ops-lead", reason="fixed")
    with driver.run(guard, "onboarding", run_id="evt-1") as run:
        run.call(find, email="ada@example.com")
    assert len(body.calls) == 1


def test_a_run_open_before_the_pause_may_be_entered_but_the_brakes_deny_its_calls(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, "onboarding", run_id="evt-2") as run:
        run.call(find, email="ada@example.com")
        ledger.pause("team", "onboarding", reason="incident 8", by="ops-lead")
        with pytest.raises(CallDenied, match="incident 8"):
            run.call(find, email="grace@example.com")
    assert len(body.calls) == 1


def test_a_tool_pause_or_another_teams_pause_leaves_new_runs_open(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    ledger.pause("tool", "email.*", reason="bounces", by="ops-lead", team="onboarding")
    ledger.pause("team", "growth", reason="other team", by="ops-lead")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, "onboarding") as run:
        run.call(find, email="ada@example.com")
    assert len(body.calls) == 1


def test_a_new_run_that_declares_a_paused_tool_is_refused_naming_the_pause_the_tool_and_its_owners(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    pause_id = ledger.pause("tool", "email.*", reason="reminders sent three times", by="ops-lead", team="onboarding")
    with (
        pytest.raises(ToolPaused) as refused,
        guard.run("onboarding", run_id="reminders", uses=["crm.find_contact", "email.send_welcome"]),
    ):
        pass
    err = refused.value
    assert isinstance(err, TeamPaused)  # a handler that stops for a paused team stops for this too
    assert (err.tool, err.pattern, err.pause_id, err.reason) == (
        "email.send_welcome",
        "email.*",
        pause_id,
        "reminders sent three times",
    )
    assert err.owners and "guard unpause --tool email.*" in str(err)
    assert pickle.loads(pickle.dumps(err)).fields == err.fields
    assert guard.ledger.get_run("reminders") is None


def test_a_tool_pause_of_every_team_refuses_a_run_declaring_that_tool_and_a_lift_lets_it_open(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    ledger.pause("tool", "crm.find_*", reason="crm returns stale data", by="ops-lead")
    with pytest.raises(ToolPaused), guard.run("onboarding", run_id="sync-1", uses=["crm.find_contact"]):
        pass
    ledger.unpause("tool", "crm.find_*", by="ops-lead", reason="crm fixed")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, "onboarding", run_id="sync-1") as run:
        run.call(find, email="ada@example.com")
    assert len(body.calls) == 1


def test_a_run_that_does_not_declare_the_paused_tool_opens_and_only_its_call_of_that_tool_is_denied(
    ledger: Ledger, make_guard: Callable[..., Guard], driver: Driver
) -> None:
    guard = make_guard(log_level="error")
    ledger.pause("tool", "email.*", reason="bounces", by="ops-lead", team="onboarding")
    body = Recorder(result={"id": "c_1"})
    find = driver.tool(guard, body, name="crm.find_contact")
    send = driver.tool(guard, body, name="email.send_welcome")
    with guard.run("onboarding", run_id="sync-2", uses=["crm.find_contact"]):
        pass
    with driver.run(guard, "onboarding", run_id="sync-3") as run:
        run.call(find, email="ada@example.com")
        with pytest.raises(CallDenied, match="bounces"):
            run.call(send, to="ada@example.com")
    assert guard.ledger.get_run("sync-2") is not None
