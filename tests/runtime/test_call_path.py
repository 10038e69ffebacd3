"""One guarded call, end to end: classify, record, deduplicate, run, record the outcome."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_support import REPO, Driver, Recorder, call_events, life

from guard import (
    ApprovalPending,
    ArgumentsRefused,
    CallDenied,
    Guard,
    GuardUsageError,
    IdempotencyConflict,
    report_external_id,
)

TEAM = "onboarding"


def test_an_allowed_call_runs_once_and_records_its_life_result_and_external_ids(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    seen: list[str] = []

    def upsert_contact(email: str) -> dict[str, str]:
        seen.append(email)
        report_external_id("crm_audit", "aud-7")
        return {"contact_id": "c-42", "email": email}

    tool = driver.tool(guard, upsert_contact, name="crm.upsert_contact", external_ids={"contact": "contact_id"})
    with driver.run(guard, TEAM) as run:
        result = run.call(tool, email="ada@example.com")

    assert result == {"contact_id": "c-42", "email": "ada@example.com"}
    assert seen == ["ada@example.com"]
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "completed"
    assert call.side_effect == "idempotent"
    assert call.result == result
    assert call.external_id_map == {"crm_audit": "aud-7", "contact": "c-42"}
    assert life(guard.ledger, run.run_id, call.call_id) == ["offered", "approved", "started", "completed"]
    reported = [
        json.loads(e.detail)
        for e in guard.ledger.events_of(run.run_id)
        if e.call_id == call.call_id and e.entity == "external_id"
    ]
    assert reported == [{"external_ids": {"crm_audit": "aud-7"}}]  # committed before the tool returned
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and record.state == "completed" and record.last_call_id == call.call_id


def test_an_unknown_tool_is_denied_recorded_and_never_runs(driver: Driver, make_guard: Callable[..., Guard]) -> None:
    guard = make_guard()
    body = Recorder()
    tool = driver.tool(guard, body, name="crm.delete_everything")
    with driver.run(guard, TEAM) as run, pytest.raises(CallDenied) as info:
        run.call(tool, confirm=True)

    assert body.calls == []
    assert "no rule" in info.value.reason
    [call] = guard.ledger.calls_of(run.run_id)
    assert (call.call_id, call.state, call.reason) == (info.value.call_id, "denied", info.value.reason)
    assert life(guard.ledger, run.run_id, call.call_id) == ["offered", "denied"]


@pytest.mark.parametrize(
    ("amount", "outcome"),
    [
        ("60000", "denied"),
        ([60000], "denied"),
        (True, "denied"),
        (None, "denied"),
        (60000.0, "awaiting_approval"),
        (100, "completed"),
    ],
    ids=["string", "list", "bool", "missing", "float", "small-int"],
)
def test_an_argument_of_the_wrong_type_never_slips_past_the_amount_rule(
    driver: Driver, make_guard: Callable[..., Guard], amount: Any, outcome: str
) -> None:
    guard = make_guard(approval="defer")
    body = Recorder(result={"invoice_id": "inv-1"})
    tool = driver.tool(guard, body, name="billing.create_invoice")
    args: dict[str, Any] = (
        {"customer_id": "cust-1"} if amount is None else {"customer_id": "cust-1", "amount_cents": amount}
    )
    expected_error = {"denied": CallDenied, "awaiting_approval": ApprovalPending, "completed": None}[outcome]
    with driver.run(guard, TEAM) as run:
        if expected_error is None:
            assert run.call(tool, **args) == {"invoice_id": "inv-1"}
        else:
            with pytest.raises(expected_error):
                run.call(tool, **args)

    assert len(body.calls) == (1 if outcome == "completed" else 0)
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == outcome


def test_the_same_call_again_in_a_run_returns_the_recorded_result_and_runs_nothing(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    body = Recorder(result={"invoice_id": "inv-9"})
    tool = driver.tool(guard, body, name="billing.create_invoice")
    with driver.run(guard, TEAM) as run:
        first = run.call(tool, customer_id="cust-1", amount_cents=100)
        again = run.call(tool, amount_cents=100, customer_id="cust-1")  # same arguments, other key order

    assert first == again == {"invoice_id": "inv-9"}
    assert len(body.calls) == 1
    [call] = guard.ledger.calls_of(run.run_id)
    assert [s for e in call_events(guard.ledger, run.run_id, call.call_id) for s in e.path].count("offered") == 1


def test_an_explicit_key_reused_with_other_arguments_is_an_idempotency_conflict(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    body = Recorder(result={"invoice_id": "inv-1"})
    tool = driver.tool(guard, body, name="billing.create_invoice")
    with driver.run(guard, TEAM) as run:
        run.call_with(tool, {"customer_id": "cust-1", "amount_cents": 100}, key="invoice-cust-1")
        with pytest.raises(IdempotencyConflict) as info:
            run.call_with(tool, {"customer_id": "cust-1", "amount_cents": 200}, key="invoice-cust-1")

    assert len(body.calls) == 1
    [call] = guard.ledger.calls_of(run.run_id)
    assert info.value.call_id == call.call_id
    assert info.value.key == "invoice-cust-1"


def test_a_call_outside_a_run_is_a_usage_error_and_runs_nothing(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    body = Recorder()
    tool = driver.tool(guard, body, name="crm.find_contact")
    with pytest.raises(GuardUsageError, match="outside a run"):
        driver.call_outside_a_run(tool, email="ada@example.com")
    assert body.calls == []


def test_a_broken_policy_file_denies_its_team_and_leaves_other_teams_working(
    driver: Driver, make_guard: Callable[..., Guard], tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "onboarding.yaml").write_text((REPO / "policies" / "onboarding.yaml").read_text())
    (folder / "growth.yaml").write_text("team: growth\nrules:\n  - name: x\n    tools: [crm.*]\n    clas: read\n")
    guard = make_guard(policies=folder)
    body = Recorder(result={"contact_id": "c-1"})
    growth_tool = driver.tool(guard, body, name="crm.find_contact")

    with driver.run(guard, "growth") as run, pytest.raises(CallDenied) as info:
        run.call(growth_tool, email="ada@example.com")
    assert "growth" in info.value.reason and "growth.yaml" in info.value.reason
    assert body.calls == []
    assert [c.state for c in guard.ledger.calls_of(run.run_id)] == ["denied"]

    with driver.run(guard, TEAM) as run:
        assert run.call(growth_tool, email="ada@example.com") == {"contact_id": "c-1"}
    assert len(body.calls) == 1


def test_async_with_and_await_run_an_async_tool_on_the_callers_event_loop(make_guard: Callable[..., Guard]) -> None:
    guard = make_guard()
    loops: list[asyncio.AbstractEventLoop] = []

    @guard.tool(name="crm.find_contact")
    async def find_contact(email: str) -> dict[str, str]:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return {"contact_id": "c-1", "email": email}

    async def agent() -> tuple[Any, str, asyncio.AbstractEventLoop]:
        async with guard.run(TEAM) as run:
            result = await find_contact("ada@example.com")  # positional arguments bind by name
        return result, run.run_id, asyncio.get_running_loop()

    result, run_id, loop = asyncio.run(agent())
    assert result == {"contact_id": "c-1", "email": "ada@example.com"}
    assert loops == [loop]
    [call] = guard.ledger.calls_of(run_id)
    assert (call.state, call.args) == ("completed", {"email": "ada@example.com"})


def test_a_sync_call_of_an_async_tool_is_a_usage_error(make_guard: Callable[..., Guard]) -> None:
    guard = make_guard()

    async def find_contact(email: str) -> None:
        raise AssertionError("never runs")

    tool = guard.tool(find_contact, name="crm.find_contact")
    with guard.run(TEAM), pytest.raises(GuardUsageError, match="await"):
        tool.call_with({"email": "ada@example.com"})


@pytest.mark.parametrize("value", [float("nan"), 2**60], ids=["nan", "big-int"])
def test_an_argument_json_cannot_hold_is_refused_with_a_guard_error_and_runs_nothing(
    driver: Driver, make_guard: Callable[..., Guard], value: Any
) -> None:
    guard = make_guard()
    body = Recorder()
    tool = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, TEAM) as run, pytest.raises(ArgumentsRefused, match="limit"):
        run.call(tool, limit=value)
    assert body.calls == []


def test_a_call_id_used_twice_is_refused_with_a_guard_error_and_the_second_call_never_runs(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    body = Recorder(result={"contact_id": "c-1"})
    tool = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, TEAM) as run:
        run.call_with(tool, {"email": "ada@example.com"}, call_id="framework-call-1")
        with pytest.raises(IdempotencyConflict):
            run.call_with(tool, {"email": "bob@example.com"}, call_id="framework-call-1")
    assert len(body.calls) == 1


def test_a_call_id_reused_in_another_run_never_returns_that_runs_result(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    body = Recorder(result={"contact_id": "c-1"})
    tool = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, TEAM) as first:
        first.call_with(tool, {"email": "ada@example.com"}, call_id="framework-call-7")
    with driver.run(guard, TEAM) as second, pytest.raises(IdempotencyConflict, match="belongs to run"):
        second.call_with(tool, {"email": "ada@example.com"}, call_id="framework-call-7")
    assert len(body.calls) == 1


@pytest.mark.parametrize("field", ["subject", "source_event_id", "team"])
def test_a_run_named_with_a_lone_surrogate_is_a_usage_error_naming_the_field_and_opens_nothing(
    make_guard: Callable[..., Guard], field: str
) -> None:
    """A subject, source event id or team that no UTF-8 text can hold (a lone surrogate from `surrogateescape`
    decoding) cannot be recorded: `GuardUsageError` naming the field before the run opens (sync and async open
    the same handle), not a bare UnicodeEncodeError from the ledger's driver."""
    guard = make_guard()
    body = Recorder()
    tool = guard.tool(body, name="lab.flaky_read")
    names: dict[str, Any] = {"subject": "ada@example.com", "source_event_id": "evt-1"} | {field: "evt-\udce9"}
    team = names.pop("team", "lab")
    with pytest.raises(GuardUsageError, match=f"the run's {field} is not valid Unicode"), guard.run(team, **names):
        tool(customer_ref="c-1")
    assert body.calls == [] and guard.ledger.list_runs() == []
