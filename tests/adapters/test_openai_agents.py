"""GuardedTools with real Agents SDK classes: an `Agent` run by the `Runner`, driven by a scripted `Model` that emits
function calls, real `function_tool` tools, a real SQLite ledger. The blocking scenarios run under both runner
entry points (`Runner.run_sync`, `Runner.run` in an event loop); the SDK's pause and resume (`needs_approval`,
interruptions, `RunState`) run under `Runner.run`."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, RunResult, RunState, ToolCallOutputItem, function_tool
from agents.exceptions import UserError
from guard_openai_agents import GuardedTools, apply_ledger_decisions
from guard_openai_agents.testing import ScriptedModel, Step, calls, function_call, message, tool_outputs
from oa_world import NAMES, Funnel

from guard import Guard, GuardUsageError, RollbackContext
from guard.ledger import Ledger
from guard.testing import ScriptedReviewer

RC = RunConfig(tracing_disabled=True)  # offline: no trace export
USER = "a new lead signed up: ann@acme.io"
Drive = Callable[[Agent[Any], Any], RunResult]


def _sync(agent: Agent[Any], inp: Any) -> RunResult:
    # run_sync runs on the thread's default event loop and keeps it open; this one is the test's, and closed.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return Runner.run_sync(agent, inp, run_config=RC)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _async(agent: Agent[Any], inp: Any) -> RunResult:
    return asyncio.run(Runner.run(agent, inp, run_config=RC))  # the task copies this context: it sees the run


@pytest.fixture(params=["run_sync", "run"])
def drive(request: pytest.FixtureRequest) -> Drive:
    return _sync if request.param == "run_sync" else _async


def _agent(guard: Guard, world: Funnel, script: list[Step]) -> tuple[Agent[Any], GuardedTools]:
    guarded = GuardedTools(guard, team="funnel", names=NAMES)
    return Agent(name="funnel", model=ScriptedModel(script), tools=guarded.wrap(world.tools())), guarded


def _outputs(result: RunResult) -> list[ToolCallOutputItem]:
    return [i for i in result.new_items if isinstance(i, ToolCallOutputItem)]


def _offered(guard: Guard, run_id: str, call_id: str) -> int:
    return sum(1 for e in guard.ledger.events_of(run_id) if e.call_id == call_id and "offered" in e.path)


class Seen:
    """A model step that records the tool outputs the model was given, then ends the run with `text`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.outputs: dict[str, str] = {}

    def __call__(self, items: list[Any]) -> list[Any]:
        self.outputs = tool_outputs(items)
        return [message(self.text)]


CONTACT = function_call("upsert_contact", {"email": "ann@acme.io", "name": "Ann"}, "call_contact")
DEAL = function_call("create_deal", {"contact_id": "c-1", "amount_cents": 90000}, "call_deal")
NOTIFY = function_call("notify_sales", {"deal_id": "d-1"}, "call_notify")
EMAIL = function_call("send_prospect_email", {"email": "ann@acme.io", "template": "intro"}, "call_email")


def test_an_allowed_call_runs_once_under_the_run_scoped_call_id_and_the_run_completes(
    guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [calls(CONTACT)])
    with guard.run("funnel", source_event_id="lead-1") as run:
        result = drive(agent, USER)
    (out,) = _outputs(result)
    assert out.output == {"contact_id": "c-1"} and out.custom_data is None
    assert world.upserts == 1
    (call,) = run.calls()
    assert (call.call_id, call.tool, call.state, call.result) == (
        "funnel:lead-1/call_contact",
        "crm.upsert_contact",
        "completed",
        {"contact_id": "c-1"},
    )
    assert run.record().state == "completed" and result.final_output == "done"


def test_a_denied_call_never_runs_and_the_model_reads_the_reason_as_the_tool_output(guard: Guard, drive: Drive) -> None:
    world = Funnel()
    seen = Seen("I may not delete leads.")
    agent, _ = _agent(guard, world, [calls(function_call("delete_all_leads", {}, "call_del")), seen])
    with guard.run("funnel", source_event_id="lead-2") as run:
        result = drive(agent, USER)
    assert world.deletes == 0
    assert seen.outputs["call_del"].startswith("[guard] crm.delete_all_leads denied")
    assert "mass deletes are not allowed" in seen.outputs["call_del"]
    (out,) = _outputs(result)
    assert out.custom_data is not None and out.custom_data["guard"]["outcome"] == "CallDenied"
    assert [(c.call_id, c.state) for c in run.calls()] == [("funnel:lead-2/call_del", "denied")]
    assert result.final_output == "I may not delete leads."


def test_a_reviewers_edit_of_the_arguments_is_what_the_framework_runs(
    ledger: Ledger, guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [calls(EMAIL)])
    with (
        ScriptedReviewer(
            ledger,
            lambda a: "approve",
            reviewer="maria",
            roles={"marketing"},
            policies=guard.policies,
            edit=lambda args: {**args, "template": "intro-short"},
        ),
        guard.run("funnel", source_event_id="lead-3e") as run,
    ):
        drive(agent, USER)
    assert world.emails == [{"email": "ann@acme.io", "template": "intro-short"}]  # the edit ran, not the ask
    assert [c.state for c in run.calls()] == ["completed"]


def test_a_blocking_wait_for_approval_runs_the_call_once_a_reviewer_approves(
    ledger: Ledger, guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [calls(EMAIL)])
    with (
        ScriptedReviewer(ledger, lambda a: "approve", reviewer="maria", roles={"marketing"}) as reviewer,
        guard.run("funnel", source_event_id="lead-3") as run,
    ):
        result = drive(agent, USER)
    assert [d for _, d in reviewer.decided] == ["approve"]
    assert world.emails == [{"email": "ann@acme.io", "template": "intro"}]
    (out,) = _outputs(result)
    assert out.output == "sent intro to ann@acme.io"
    assert [(c.call_id, c.state) for c in run.calls()] == [("funnel:lead-3/call_email", "completed")]
    assert run.record().state == "completed"


def test_a_blocking_wait_rejected_never_runs_and_the_model_reads_the_reviewers_reason(
    ledger: Ledger, guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    seen = Seen("ok, no email")
    agent, _ = _agent(guard, world, [calls(EMAIL), seen])
    with (
        ScriptedReviewer(
            ledger,
            lambda a: "reject",
            reviewer="maria",
            roles={"marketing"},
            reason="not before the call with sales",
        ),
        guard.run("funnel", source_event_id="lead-4") as run,
    ):
        result = drive(agent, USER)
    assert world.emails == []
    assert "not before the call with sales" in seen.outputs["call_email"]
    (out,) = _outputs(result)
    assert out.custom_data is not None and out.custom_data["guard"]["outcome"] == "CallRejected"
    assert [(c.call_id, c.state) for c in run.calls()] == [("funnel:lead-4/call_email", "rejected")]


def test_a_failure_compensates_the_earlier_deal_and_the_model_reads_the_failure(guard: Guard, drive: Drive) -> None:
    world = Funnel(slack_down=True)
    seen = Seen("sales could not be told")
    agent, guarded = _agent(guard, world, [calls(CONTACT), calls(DEAL), calls(NOTIFY), seen])

    @guarded.tool("crm.create_deal").compensation(name="crm.close_deal")
    def close_deal(ctx: RollbackContext) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]  # registered by the decorator
        world.closed.append(ctx.result["deal_id"])
        return {"closed": ctx.result["deal_id"]}

    with guard.run("funnel", source_event_id="lead-5") as run:
        result = drive(agent, USER)
    assert world.closed == ["d-1"]  # the deal this run opened, closed once
    assert world.notices == []
    assert seen.outputs["call_notify"].startswith("[guard]") and "slack is down" in seen.outputs["call_notify"]
    notify = _outputs(result)[-1]
    assert notify.custom_data is not None and notify.custom_data["guard"]["outcome"] == "CallFailed"
    states = {c.tool: c.state for c in run.calls()}
    assert states["crm.create_deal"] == "rolled_back"
    assert states["slack.notify_sales"] == "failed"
    assert states["crm.close_deal"] == "completed"
    assert run.record().state in ("rolled_back", "pending_review")  # the contact stays: review decides


def test_the_same_event_run_again_repeats_no_effect_even_with_new_tool_call_ids(guard: Guard, drive: Drive) -> None:
    world = Funnel()
    first, _ = _agent(guard, world, [calls(CONTACT), calls(DEAL)])
    with guard.run("funnel", source_event_id="lead-6"):
        drive(first, USER)
    assert (world.upserts, len(world.deals)) == (1, 1)
    # A real model names its tool calls afresh on every run: dedupe rests on the idempotency key, not the id.
    again: list[Step] = [
        calls(function_call("upsert_contact", {"email": "ann@acme.io", "name": "Ann"}, "call_contact_2")),
        calls(function_call("create_deal", {"contact_id": "c-1", "amount_cents": 90000}, "call_deal_2")),
    ]
    second, _ = _agent(guard, world, again)
    with guard.run("funnel", source_event_id="lead-6") as run:
        result = drive(second, USER)
    assert (world.upserts, len(world.deals)) == (1, 1)
    deal = _outputs(result)[-1]
    assert deal.output == {"deal_id": "d-1"}
    assert deal.custom_data is not None and deal.custom_data["guard"]["deduplicated"] is True
    assert len(run.calls()) == 2  # no new call rows either


def test_a_models_call_ids_reused_in_another_run_are_namespaced_by_the_run(guard: Guard, drive: Drive) -> None:
    world = Funnel()
    for event in ("lead-7a", "lead-7b"):  # the scripted model says `call_contact` in both runs
        agent, _ = _agent(
            guard,
            world,
            [calls(function_call("upsert_contact", {"email": f"{event}@acme.io", "name": "Ann"}, "call_contact"))],
        )
        with guard.run("funnel", source_event_id=event) as run:
            (out,) = _outputs(drive(agent, USER))
        assert out.custom_data is None  # it ran: no IdempotencyConflict, no other run's result
        assert [c.call_id for c in run.calls()] == [f"funnel:{event}/call_contact"]
    assert world.upserts == 2


# -- the SDK's own pause and resume (Guard(approval="defer")) ---------------------------------------------------


async def _resume(
    guard: Guard,
    world: Funnel,
    saved: str,
    script: list[Step],
    event: str,
) -> tuple[RunResult, list[str]]:
    """Another process picks the run up: a fresh agent, the SDK state from its string, the ledger's decisions."""
    agent, _ = _agent(guard, world, script)
    async with guard.run("funnel", source_event_id=event):
        state = await RunState.from_string(agent, saved)
        decisions = apply_ledger_decisions(guard, state)
        result = await Runner.run(agent, state, run_config=RC)
    return result, [
        d
        for d, items in (
            ("approved", decisions.approved),
            ("rejected", decisions.rejected),
            ("pending", decisions.pending),
        )
        for _ in items
    ]


async def _pause(guard: Guard, world: Funnel, script: list[Step], event: str) -> str:
    agent, _ = _agent(guard, world, script)
    async with guard.run("funnel", source_event_id=event):
        result = await Runner.run(agent, USER, run_config=RC)
    (item,) = result.interruptions
    assert (item.name, item.call_id) == ("send_prospect_email", "call_email")
    return result.to_state().to_string()


def test_deferred_approval_pauses_with_an_sdk_interruption_and_resumes_from_run_state_offering_nothing_twice(
    ledger: Ledger,
    deferring_guard: Guard,
) -> None:
    guard, world, event = deferring_guard, Funnel(), "lead-8"
    script: list[Step] = [calls(CONTACT), calls(EMAIL)]
    saved = asyncio.run(_pause(guard, world, script, event))
    run_id, call_id = f"funnel:{event}", f"funnel:{event}/call_email"
    assert guard.ledger.get_run(run_id).state == "paused"  # pyright: ignore[reportOptionalMemberAccess]
    assert (world.upserts, world.emails) == (1, [])

    result, decided = asyncio.run(_resume(guard, world, saved, script, event))  # nobody decided yet
    assert decided == ["pending"] and len(result.interruptions) == 1 and world.emails == []

    (approval,) = guard.ledger.list_approvals(team="funnel")
    assert approval.call_id == call_id
    ledger.decide(approval.approval_id, reviewer="maria", decision="approve", reviewer_roles=frozenset({"marketing"}))
    result, decided = asyncio.run(_resume(guard, world, result.to_state().to_string(), script, event))
    assert decided == ["approved"] and result.interruptions == []
    assert world.emails == [{"email": "ann@acme.io", "template": "intro"}]
    assert world.upserts == 1  # the contact call was not run again by the resume
    assert _offered(guard, run_id, call_id) == 1
    assert [(c.call_id, c.state) for c in guard.ledger.calls_of(run_id)] == [
        (f"funnel:{event}/call_contact", "completed"),
        (call_id, "completed"),
    ]
    assert guard.ledger.get_run(run_id).state == "completed"  # pyright: ignore[reportOptionalMemberAccess]


def test_deferred_rejection_reaches_the_model_through_the_sdks_rejection_and_nothing_runs(
    ledger: Ledger,
    deferring_guard: Guard,
) -> None:
    guard, world, event = deferring_guard, Funnel(), "lead-9"
    seen = Seen("understood, no email")
    saved = asyncio.run(_pause(guard, world, [calls(EMAIL), seen], event))
    (approval,) = guard.ledger.list_approvals(team="funnel")
    ledger.decide(
        approval.approval_id,
        reviewer="maria",
        decision="reject",
        reviewer_roles=frozenset({"marketing"}),
        reason="not before the call with sales",
    )
    result, decided = asyncio.run(_resume(guard, world, saved, [calls(EMAIL), seen], event))
    assert decided == ["rejected"] and world.emails == []
    assert seen.outputs["call_email"].startswith("[guard] email.send_prospect was rejected")
    assert "not before the call with sales" in seen.outputs["call_email"]
    assert result.final_output == "understood, no email"
    assert [c.state for c in guard.ledger.calls_of(f"funnel:{event}")] == ["rejected"]


def test_an_sdk_approval_the_ledger_does_not_hold_never_runs_the_call(deferring_guard: Guard) -> None:
    guard, world, event = deferring_guard, Funnel(), "lead-10"
    seen = Seen("still waiting")

    async def approve_in_the_sdk_only() -> None:
        agent, _ = _agent(guard, world, [calls(EMAIL), seen])
        async with guard.run("funnel", source_event_id=event):
            result = await Runner.run(agent, USER, run_config=RC)
            state = result.to_state()
            for item in result.interruptions:
                state.approve(item)  # nobody approved in Guard
            await Runner.run(agent, state, run_config=RC)

    asyncio.run(approve_in_the_sdk_only())
    assert world.emails == []
    assert "waiting for approval" in seen.outputs["call_email"]
    call_id = f"funnel:{event}/call_email"
    assert guard.ledger.get_call(call_id).state == "awaiting_approval"  # pyright: ignore[reportOptionalMemberAccess]
    assert _offered(guard, f"funnel:{event}", call_id) == 1


# -- wiring mistakes are loud -------------------------------------------------------------------------------------


def test_a_tool_with_its_own_needs_approval_is_refused_the_policy_decides(guard: Guard) -> None:
    @function_tool(needs_approval=True)
    def wire_money(amount_cents: int) -> str:
        """Send money."""
        return "sent"

    with pytest.raises(GuardUsageError, match="needs_approval"):
        GuardedTools(guard, team="funnel").wrap([wire_money])


def test_a_tool_call_outside_a_run_or_in_another_teams_run_fails_the_agent_run(
    ledger_url: str, guard: Guard, policy_dir: Any
) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [calls(CONTACT)])
    with pytest.raises(UserError, match="outside a run"):
        _sync(agent, USER)
    (policy_dir / "other.yaml").write_text("team: other\nrules:\n  - {name: all, tools: ['*'], class: read}\n")
    other = Guard(policies=policy_dir, db=ledger_url, log_level="error")
    try:
        agent, _ = _agent(other, world, [calls(CONTACT)])
        with other.run("other", source_event_id="x"), pytest.raises(UserError, match="team 'funnel'"):
            _sync(agent, USER)
    finally:
        other.close()
    assert world.upserts == 0


def test_importing_the_adapter_without_the_sdk_fails_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "agents", None)  # what `import agents` finds when the SDK is not installed
    monkeypatch.delitem(sys.modules, "guard_openai_agents")
    with pytest.raises(ImportError, match=r"pip install 'guard-middleware\[openai-agents\]'"):
        importlib.import_module("guard_openai_agents")


def test_an_approved_call_delivered_again_with_a_new_call_id_runs_once_and_the_old_state_reads_its_record(
    ledger: Ledger,
    deferring_guard: Guard,
) -> None:
    guard, world, event = deferring_guard, Funnel(), "lead-11"
    saved = asyncio.run(_pause(guard, world, [calls(EMAIL)], event))
    (approval,) = guard.ledger.list_approvals(team="funnel")
    ledger.decide(approval.approval_id, reviewer="maria", decision="approve", reviewer_roles=frozenset({"marketing"}))

    async def deliver_again() -> RunResult:  # the worker lost the SDK state; the event comes again
        agent, _ = _agent(
            guard,
            world,
            [
                calls(
                    function_call("send_prospect_email", {"email": "ann@acme.io", "template": "intro"}, "call_email_2")
                )
            ],
        )
        async with guard.run("funnel", source_event_id=event):
            return await Runner.run(agent, USER, run_config=RC)

    again = asyncio.run(deliver_again())
    assert again.interruptions == []  # the ledger holds the approval of this very action: no second request
    assert world.emails == [{"email": "ann@acme.io", "template": "intro"}]
    result, decided = asyncio.run(_resume(guard, world, saved, [calls(EMAIL)], event))  # the old state, too
    assert decided == ["approved"] and result.interruptions == []
    assert len(world.emails) == 1
    (out,) = _outputs(result)
    assert out.output == "sent intro to ann@acme.io"
    assert out.custom_data is not None and out.custom_data["guard"]["deduplicated"] is True
    assert [(c.call_id, c.state) for c in guard.ledger.calls_of(f"funnel:{event}")] == [
        (f"funnel:{event}/call_email", "completed")
    ]
