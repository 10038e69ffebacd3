"""When a tool fails, times out, or the brakes are on: typed outcomes, recorded first, runs halted for review."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_support import Driver, Recorder, call_events

from guard import CallDenied, CallFailed, CallInDoubt, Guard, RunNotRunning
from guard.ledger import Ledger


def test_a_failing_tool_under_on_failure_halt_raises_call_failed_and_halts_the_run_for_review(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    boom = RuntimeError("disk full")
    tool = driver.tool(guard, Recorder(errors=[boom]), name="lab.halting_write")
    with driver.run(guard, "lab") as run, pytest.raises(CallFailed) as failed:
        run.call(tool, path="/tmp/x")

    assert failed.value.__cause__ is boom
    assert failed.value.state == "failed"
    assert "disk full" in failed.value.error
    [call] = guard.ledger.calls_of(run.run_id)
    assert (call.call_id, call.state, call.error, call.attempts) == (
        failed.value.call_id,
        "failed",
        "RuntimeError: disk full",
        1,
    )
    record = guard.ledger.get_run(run.run_id)
    assert record is not None
    assert (record.state, record.status_label, record.requires_review) == ("pending_review", "lab_failed", True)
    assert "disk full" in (record.error_summary or "")


def test_a_failing_tool_under_on_failure_continue_leaves_the_run_running(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    tool = driver.tool(guard, Recorder(errors=[ValueError("bad row")]), name="lab.continuing_write")
    with driver.run(guard, "lab") as run:
        with pytest.raises(CallFailed):
            run.call(tool, row=1)
        record = guard.ledger.get_run(run.run_id)
        assert record is not None and record.state == "running" and not record.requires_review
    assert [c.state for c in guard.ledger.calls_of(run.run_id)] == ["failed"]
    run_record = guard.ledger.get_run(run.run_id)
    assert run_record is not None and run_record.state == "completed"


def test_a_repeat_safe_tool_that_fails_twice_completes_on_the_third_attempt_with_each_failure_recorded(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    body = Recorder(result={"rows": 3}, errors=[ConnectionError("reset"), TimeoutError("slow")])
    tool = driver.tool(guard, body, name="lab.flaky_read")
    with driver.run(guard, "lab") as run:
        assert run.call(tool, q="x") == {"rows": 3}

    assert len(body.calls) == 3
    [call] = guard.ledger.calls_of(run.run_id)
    assert (call.state, call.attempts) == ("completed", 3)
    attempts = [
        json.loads(e.detail)
        for e in call_events(guard.ledger, run.run_id, call.call_id)
        if e.from_state == e.to_state == "started"
    ]
    assert attempts == [
        {"attempt": 1, "error": "ConnectionError: reset"},
        {"attempt": 2, "error": "TimeoutError: slow"},
    ]


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds a hanging sync tool's worker thread; released at teardown so the thread ends."""
    event = threading.Event()
    yield event
    event.set()


def test_a_timed_out_attempt_of_a_compensable_tool_is_in_doubt_and_halts_the_run(
    driver: Driver, make_guard: Callable[..., Guard], gate: threading.Event
) -> None:
    guard = make_guard()
    started: list[str] = []
    tool = driver.hanging_tool(guard, name="lab.slow_write", gate=gate, started=started)
    with driver.run(guard, "lab") as run, pytest.raises(CallInDoubt) as doubt:
        run.call(tool, row=1)

    assert started == ["attempt"]  # one attempt, never retried blindly
    assert doubt.value.state == "in_doubt"
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "in_doubt"
    record = guard.ledger.get_run(run.run_id)
    assert record is not None
    assert (record.state, record.status_label, record.requires_review) == ("pending_review", "lab_in_doubt", True)


def pause_team(db_path: Path, team: str, reason: str) -> None:
    """An operator pauses the team from elsewhere (`guard pause`): another ledger handle on the same file."""
    other = Ledger(f"sqlite:///{db_path}")
    try:
        other.pause("team", team, reason=reason, by="ops-lead", team=team)
    finally:
        other.close()


def test_a_call_of_a_paused_team_is_denied_naming_the_pause_and_never_runs(
    driver: Driver, make_guard: Callable[..., Guard], db_path: Path
) -> None:
    guard = make_guard()
    body = Recorder()
    tool = driver.tool(guard, body, name="crm.find_contact")
    with driver.run(guard, "onboarding") as run, pytest.raises(CallDenied) as denied:  # open before the pause:
        pause_team(db_path, "onboarding", "incident 42: duplicate invoices")  # a paused team opens no new run
        run.call(tool, email="ada@example.com")

    assert body.calls == []
    assert "paused" in denied.value.reason and "incident 42" in denied.value.reason
    assert [c.state for c in guard.ledger.calls_of(run.run_id)] == ["denied"]


def test_a_pause_of_another_team_does_not_stop_this_one(
    driver: Driver, make_guard: Callable[..., Guard], db_path: Path
) -> None:
    guard = make_guard()
    tool = driver.tool(guard, Recorder(result={"rows": 1}), name="lab.flaky_read")
    pause_team(db_path, "onboarding", "incident 42")
    with driver.run(guard, "lab") as run:
        assert run.call(tool, q="x") == {"rows": 1}


def test_no_call_starts_in_a_run_pending_review_and_the_run_cannot_be_reopened(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    failing = driver.tool(guard, Recorder(errors=[RuntimeError("boom")]), name="lab.halting_write")
    reader = Recorder(result={"rows": 1})
    read = driver.tool(guard, reader, name="lab.flaky_read")
    with driver.run(guard, "lab") as run:
        with pytest.raises(CallFailed):
            run.call(failing, path="/x")
        with pytest.raises(RunNotRunning) as closed:
            run.call(read, q="x")
    assert reader.calls == []
    assert "pending_review" in closed.value.reason
    run_record = guard.ledger.get_run(run.run_id)
    assert run_record is not None and run_record.state == "pending_review"

    with pytest.raises(RunNotRunning) as reopened, driver.run(guard, "lab", run_id=run.run_id):
        pass
    assert reopened.value.state == "pending_review"


def test_a_repeat_safe_tool_that_fails_every_attempt_ends_failed_after_exactly_its_attempts(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    body = Recorder(errors=[ConnectionError(f"reset {i}") for i in range(1, 5)])
    tool = driver.tool(guard, body, name="lab.flaky_read")
    with driver.run(guard, "lab") as run, pytest.raises(CallFailed) as failed:
        run.call(tool, q="x")

    assert len(body.calls) == 3
    assert "reset 3" in failed.value.error
    [call] = guard.ledger.calls_of(run.run_id)
    assert (call.state, call.attempts) == ("failed", 3)


def test_cancelling_the_agent_task_mid_call_records_the_call_in_doubt_and_the_cancellation_propagates(
    make_guard: Callable[..., Guard],
) -> None:
    guard = make_guard()
    entered = asyncio.Event()

    @guard.tool(name="lab.halting_write")
    async def write(path: str) -> None:
        entered.set()
        await asyncio.Event().wait()

    async def agent() -> str:
        async with guard.run("lab") as run:
            task = asyncio.create_task(write(path="/x"))
            await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return run.run_id

    run_id = asyncio.run(agent())
    [call] = guard.ledger.calls_of(run_id)
    assert call.state == "in_doubt"
    record = guard.ledger.get_run(run_id)
    assert record is not None and record.state == "pending_review" and record.requires_review


def test_a_result_holding_a_lone_surrogate_completes_the_call_with_the_character_replaced(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    """The tool ran, so its call must end `completed`: a result string no UTF-8 text can hold (a lone surrogate)
    is kept with U+FFFD in its place, and the agent gets the result as the tool returned it. (The ledger's encoder
    raised instead: the agent got a bare UnicodeEncodeError after the effect, the call stayed `started`.)"""
    guard = make_guard()
    result = {"invoice_id": "inv-1", "file": "r\udce9sum\u00e9.pdf"}
    tool = driver.tool(guard, Recorder(result=result), name="lab.halting_write")
    with driver.run(guard, "lab") as run:
        assert run.call(tool, path="/tmp/x") == result
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "completed" and call.result == {"invoice_id": "inv-1", "file": "r\ufffdsum\u00e9.pdf"}
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and record.state == "completed"


def test_a_failure_message_holding_a_lone_surrogate_fails_the_call_and_halts_the_run_for_review(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    """An exception whose text no UTF-8 can hold is recorded like any failure (the character replaced by U+FFFD):
    `CallFailed` with the tool's exception as its cause, the call `failed`, the run in review. (Recording the
    failure raised UnicodeEncodeError instead, and the call stayed `started` under its lease.)"""
    guard = make_guard()
    boom = RuntimeError("cannot open /srv/r\udce9sum\u00e9.pdf")
    tool = driver.tool(guard, Recorder(errors=[boom]), name="lab.halting_write")
    with driver.run(guard, "lab") as run, pytest.raises(CallFailed) as failed:
        run.call(tool, path="/tmp/x")
    assert failed.value.__cause__ is boom
    [call] = guard.ledger.calls_of(run.run_id)
    assert (call.state, call.error) == ("failed", "RuntimeError: cannot open /srv/r\ufffdsum\u00e9.pdf")
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and record.state == "pending_review"


class _NoRepr:
    def __repr__(self) -> str:
        raise RuntimeError("this object cannot be shown")


def _nested(levels: int, bottom: str = "bottom") -> Any:
    value: Any = bottom
    for _ in range(levels):
        value = [value]
    return value


def _cycle() -> dict[str, Any]:
    loop: dict[str, Any] = {"invoice_id": "inv-1"}
    loop["self"] = loop
    return loop


def _strict_json(text: str) -> Any:
    """`text` parsed as strict JSON: NaN and Infinity, which Python's parser lets through, are refused."""

    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _nan_result() -> dict[str, float]:
    return {"total": float("nan"), "max": float("inf")}


def _tuple_key_result() -> dict[tuple[str, int], str]:
    return {("eu", 1): "inv-1"}


def _no_repr_result() -> dict[str, _NoRepr]:
    return {"obj": _NoRepr()}


def _deep_result() -> dict[str, Any]:
    return {"invoice_id": "inv-1", "tree": _nested(5000)}


# Each result JSON cannot hold as it is, and the strict JSON the ledger keeps of it.
UNFIT_RESULTS: dict[str, tuple[Callable[[], Any], Any]] = {
    "nested-5000": (_deep_result, {"invoice_id": "inv-1", "tree": _nested(99, "[nested too deep]")}),
    "cycle": (_cycle, {"invoice_id": "inv-1", "self": "[cycle]"}),
    "nan": (_nan_result, {"total": "NaN", "max": "Infinity"}),
    "tuple-key": (_tuple_key_result, {"('eu', 1)": "inv-1"}),
    "repr-raises": (_no_repr_result, {"obj": "<_NoRepr object>"}),
}


@pytest.mark.parametrize("case", sorted(UNFIT_RESULTS))
def test_a_result_json_cannot_hold_as_it_is_completes_the_call_with_the_agent_getting_it_unchanged(
    driver: Driver, make_guard: Callable[..., Guard], case: str
) -> None:
    """The tool ran: its call must end `completed`, whatever it returned. A result nested deeper than the encoder
    goes, holding a reference cycle, NaN, a tuple key or an object whose repr fails is stored as strict JSON with
    those places spelled out as text; the agent gets the very object the tool returned. (Recording it raised
    RecursionError, ValueError or TypeError after the effect: the call stayed `started` and the agent got a bare
    exception, outside GuardError.)"""
    guard = make_guard()
    make, stored = UNFIT_RESULTS[case]
    value = make()
    tool = driver.tool(guard, Recorder(result=value), name="lab.halting_write")
    with driver.run(guard, "lab") as run:
        assert run.call(tool, path="/tmp/x") is value
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "completed" and call.result_json is not None
    assert _strict_json(call.result_json) == stored
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and record.state == "completed"


class _Unprintable(Exception):
    """An exception whose own `__str__` fails, as a tool's or an agent's exception class may."""

    def __str__(self) -> str:
        raise RuntimeError("cannot format this error")


def test_an_agent_exception_whose_str_fails_still_closes_the_run_and_reaches_the_agent(
    make_guard: Callable[..., Guard],
) -> None:
    """The agent's own exception leaves the run block: the run is closed (`halted`, nothing changed) with the
    exception's type as its error summary, and the agent gets that exception, not a RuntimeError from formatting
    it (which left the run `running`)."""
    guard = make_guard()
    boom = _Unprintable()
    with pytest.raises(_Unprintable) as raised, guard.run("lab") as run:
        raise boom
    assert raised.value is boom
    record = guard.ledger.get_run(run.run_id)
    assert record is not None and record.state == "halted"
    assert record.error_summary == "_Unprintable: <no message: its str failed>"


def test_a_tool_exception_whose_str_fails_is_recorded_as_a_failure_of_the_call(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    """The tool raised: its call ends `failed` with the exception's type, and the agent gets `CallFailed` whose
    cause is the tool's exception."""
    guard = make_guard()
    boom = _Unprintable()
    tool = driver.tool(guard, Recorder(errors=[boom]), name="lab.halting_write")
    with driver.run(guard, "lab") as run, pytest.raises(CallFailed) as failed:
        run.call(tool, path="/tmp/x")
    assert failed.value.__cause__ is boom
    [call] = guard.ledger.calls_of(run.run_id)
    assert (call.state, call.error) == ("failed", "_Unprintable: <no message: its str failed>")
