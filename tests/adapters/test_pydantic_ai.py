"""ToolGuard with real Pydantic AI classes: an `Agent` driven by a scripted `FunctionModel` that emits tool calls,
real function tools in a `FunctionToolset`, a real SQLite ledger. Sync (`run_sync`) and async (`run`) drivers run
the same scenarios."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from guard_pydantic_ai import ToolGuard
from guard_pydantic_ai.testing import Step, scripted_model, tool_call, tool_calls
from pai_world import NAMES, Funnel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolReturnPart
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, Tool, ToolApproved
from pydantic_ai.toolsets import FunctionToolset

from guard import Guard, GuardUsageError, RollbackContext
from guard.ledger import Ledger
from guard.testing import ScriptedReviewer

Drive = Callable[..., Any]  # (agent, **run kwargs) -> AgentRunResult
PROMPT = "a new lead signed up: ann@acme.io"


def _sync(agent: Agent[None, Any], **kw: Any) -> Any:
    return agent.run_sync(PROMPT if "message_history" not in kw else None, **kw)


def _async(agent: Agent[None, Any], **kw: Any) -> Any:
    # The task copies this context: it sees the open run.
    return asyncio.run(agent.run(PROMPT if "message_history" not in kw else None, **kw))


@pytest.fixture(autouse=True)
def event_loop_of_this_test() -> Iterator[None]:
    """`run_sync` drives the thread's current event loop (creating one if there is none); each test gets its own
    and closes it, so no loop outlives the test that made it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture(params=["sync", "async"])
def drive(request: pytest.FixtureRequest) -> Drive:
    return _sync if request.param == "sync" else _async


def _agent(guard: Guard, world: Funnel, script: Sequence[Step]) -> tuple[Agent[None, Any], ToolGuard]:
    tools = ToolGuard(guard, team="funnel", names=NAMES)
    agent = Agent(
        scripted_model(script),
        toolsets=[world.toolset()],
        capabilities=[tools.capability()],
        output_type=[str, DeferredToolRequests],
    )
    return agent, tools


def _returns(messages: Sequence[ModelMessage]) -> list[ToolReturnPart]:
    return [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]


def _offered(guard: Guard, run_id: str, call_id: str) -> int:
    return sum(1 for e in guard.ledger.events_of(run_id) if e.call_id == call_id and "offered" in e.path)


def _reply_after(seen: list[ToolReturnPart], text: str) -> Step:
    """A model turn that keeps the tool returns it was shown, then answers `text`."""

    def step(messages: Sequence[ModelMessage]) -> ModelResponse:
        seen.extend(_returns(messages[-1:]))
        return ModelResponse(parts=[TextPart(text)])

    return step


CONTACT = tool_call("upsert_contact", {"email": "ann@acme.io", "name": "Ann"}, "call_1")
DEAL = tool_call("create_deal", {"contact_id": "c-1", "amount_cents": 90000}, "call_2")
NOTIFY = tool_call("notify_sales", {"deal_id": "d-1"}, "call_3")
EMAIL = tool_call("send_prospect_email", {"email": "ann@acme.io", "template": "intro"}, "call_4")


def test_an_allowed_call_runs_once_under_a_run_scoped_call_id_and_the_run_completes(guard: Guard, drive: Drive) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [tool_calls(CONTACT)])
    with guard.run("funnel", source_event_id="lead-1") as run:
        result = drive(agent)
    (ret,) = _returns(result.all_messages())
    assert (ret.outcome, ret.content, ret.metadata) == ("success", {"contact_id": "c-1"}, None)
    assert world.upserts == 1
    (call,) = run.calls()
    assert (call.call_id, call.tool, call.state, call.result) == (
        "funnel:lead-1/call_1",
        "crm.upsert_contact",
        "completed",
        {"contact_id": "c-1"},
    )
    assert run.record().state == "completed" and result.output == "done"


def test_a_denied_call_never_runs_and_the_model_reads_the_reason_in_a_denied_tool_return(
    guard: Guard, drive: Drive
) -> None:
    world, seen = Funnel(), list[ToolReturnPart]()
    agent, _ = _agent(
        guard,
        world,
        [tool_calls(tool_call("delete_all_leads", {}, "call_1")), _reply_after(seen, "I may not delete leads.")],
    )
    with guard.run("funnel", source_event_id="lead-2") as run:
        result = drive(agent)
    assert world.deletes == 0
    (ret,) = seen
    assert (ret.tool_call_id, ret.outcome) == ("call_1", "denied")
    assert isinstance(ret.content, str) and ret.content.startswith("[guard] ")
    assert "mass deletes are not allowed" in ret.content
    assert ret.metadata["guard"]["outcome"] == "CallDenied"
    assert ret.metadata["guard"]["call_id"] == "funnel:lead-2/call_1"
    assert [(c.call_id, c.state) for c in run.calls()] == [("funnel:lead-2/call_1", "denied")]
    assert result.output == "I may not delete leads."


def test_a_reviewers_edit_of_the_arguments_is_what_the_framework_runs(
    ledger: Ledger, guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL)])
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
        drive(agent)
    assert world.emails == [{"email": "ann@acme.io", "template": "intro-short"}]  # the edit ran, not the ask
    assert [c.state for c in run.calls()] == ["completed"]


def test_a_blocking_wait_for_approval_runs_the_call_once_a_reviewer_approves(
    ledger: Ledger, guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL)])
    with (
        ScriptedReviewer(ledger, lambda a: "approve", reviewer="maria", roles={"marketing"}) as reviewer,
        guard.run("funnel", source_event_id="lead-3") as run,
    ):
        result = drive(agent)
    assert len(reviewer.decided) == 1
    assert world.emails == [{"email": "ann@acme.io", "template": "intro"}]
    (ret,) = _returns(result.all_messages())
    assert ret.outcome == "success"
    assert [(c.call_id, c.state) for c in run.calls()] == [("funnel:lead-3/call_4", "completed")]
    assert run.record().state == "completed"


def test_a_blocking_wait_ends_in_a_denied_tool_return_with_the_reviewers_reason_when_rejected(
    ledger: Ledger, guard: Guard, drive: Drive
) -> None:
    world, seen = Funnel(), list[ToolReturnPart]()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL), _reply_after(seen, "no email then")])
    with (
        ScriptedReviewer(
            ledger,
            lambda a: "reject",
            reviewer="maria",
            roles={"marketing"},
            reason="not before the call with sales",
        ),
        guard.run("funnel", source_event_id="lead-3r") as run,
    ):
        result = drive(agent)
    assert world.emails == []
    (ret,) = seen
    assert ret.outcome == "denied" and "not before the call with sales" in str(ret.content)
    assert ret.metadata["guard"]["outcome"] == "CallRejected"
    assert result.output == "no email then"
    assert [(c.call_id, c.state) for c in run.calls()] == [("funnel:lead-3r/call_4", "rejected")]


def test_deferred_approval_ends_the_run_with_deferred_tool_requests_and_runs_only_once_the_ledger_approves(
    ledger: Ledger, deferring_guard: Guard, drive: Drive
) -> None:
    guard, world = deferring_guard, Funnel()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL)])
    with guard.run("funnel", source_event_id="lead-4") as run:
        first = drive(agent)
    assert isinstance(first.output, DeferredToolRequests)
    (asked,) = first.output.approvals
    assert asked.tool_call_id == "call_4"
    meta = first.output.metadata["call_4"]["guard"]
    assert (meta["outcome"], meta["call_id"]) == ("ApprovalPending", "funnel:lead-4/call_4")
    assert run.record().state == "paused" and world.emails == []

    # The caller approves, but no reviewer has decided in the ledger: the run pauses again, nothing runs.
    approve = DeferredToolResults(approvals={"call_4": True})
    with guard.run("funnel", source_event_id="lead-4"):
        second = drive(agent, message_history=first.all_messages(), deferred_tool_results=approve)
    assert isinstance(second.output, DeferredToolRequests) and world.emails == []

    (approval,) = guard.ledger.list_approvals(team="funnel")
    assert approval.approval_id == meta["approval_id"]
    ledger.decide(approval.approval_id, reviewer="maria", decision="approve", reviewer_roles=frozenset({"marketing"}))
    with guard.run("funnel", source_event_id="lead-4") as run:
        third = drive(agent, message_history=second.all_messages(), deferred_tool_results=approve)
    assert third.output == "done"
    assert world.emails == [{"email": "ann@acme.io", "template": "intro"}]
    assert _offered(guard, run.run_id, "funnel:lead-4/call_4") == 1
    assert [(c.call_id, c.state) for c in run.calls()] == [("funnel:lead-4/call_4", "completed")]
    assert run.record().state == "completed"


def test_a_rejected_call_never_runs_even_when_the_caller_approves_and_the_model_reads_the_reviewers_reason(
    ledger: Ledger, deferring_guard: Guard, drive: Drive
) -> None:
    guard, world, seen = deferring_guard, Funnel(), list[ToolReturnPart]()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL), _reply_after(seen, "no email then")])
    with guard.run("funnel", source_event_id="lead-5"):
        first = drive(agent)
    assert isinstance(first.output, DeferredToolRequests)
    (approval,) = guard.ledger.list_approvals(team="funnel")
    ledger.decide(
        approval.approval_id,
        reviewer="maria",
        decision="reject",
        reviewer_roles=frozenset({"marketing"}),
        reason="not before the call with sales",
    )
    with guard.run("funnel", source_event_id="lead-5") as run:
        second = drive(
            agent,
            message_history=first.all_messages(),
            deferred_tool_results=DeferredToolResults(approvals={"call_4": True}),
        )
    assert world.emails == []
    (ret,) = seen
    assert ret.outcome == "denied" and "not before the call with sales" in str(ret.content)
    # A re-offered rejected call: the core raises CallDenied with the state the reviewer left it in.
    assert ret.metadata["guard"]["state"] == "rejected"
    assert second.output == "no email then"
    assert [(c.call_id, c.state) for c in run.calls()] == [("funnel:lead-5/call_4", "rejected")]


def test_an_approval_with_other_arguments_than_the_reviewed_ones_runs_nothing(
    ledger: Ledger, deferring_guard: Guard
) -> None:
    guard, world = deferring_guard, Funnel()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL)])
    with guard.run("funnel", source_event_id="lead-6"):
        first = agent.run_sync(PROMPT)
    (approval,) = guard.ledger.list_approvals(team="funnel")
    ledger.decide(approval.approval_id, reviewer="maria", decision="approve", reviewer_roles=frozenset({"marketing"}))
    swapped = ToolApproved(override_args={"email": "everyone@acme.io", "template": "intro"})
    with guard.run("funnel", source_event_id="lead-6"):
        second = agent.run_sync(
            message_history=first.all_messages(),
            deferred_tool_results=DeferredToolResults(approvals={"call_4": swapped}),
        )
    assert world.emails == []
    (ret,) = _returns(second.all_messages())
    assert ret.outcome == "failed" and ret.metadata["guard"]["outcome"] == "IdempotencyConflict"


def test_a_failure_compensates_the_earlier_deal_and_the_model_reads_a_failed_tool_return(
    guard: Guard, drive: Drive
) -> None:
    world = Funnel(slack_down=True)
    agent, tools = _agent(guard, world, [tool_calls(CONTACT), tool_calls(DEAL), tool_calls(NOTIFY)])

    @tools.tool("crm.create_deal").compensation(name="crm.close_deal")
    def close_deal(ctx: RollbackContext) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]  # registered by the decorator
        world.closed.append(ctx.result["deal_id"])
        return {"closed": ctx.result["deal_id"]}

    with guard.run("funnel", source_event_id="lead-7") as run:
        result = drive(agent)
    assert world.closed == ["d-1"]  # the deal this run opened, closed once
    assert world.notices == []
    notify = _returns(result.all_messages())[-1]
    assert notify.outcome == "failed" and "slack is down" in str(notify.content)
    assert notify.metadata["guard"]["outcome"] == "CallFailed"
    states = {c.tool: c.state for c in run.calls()}
    assert states["crm.create_deal"] == "rolled_back"
    assert states["slack.notify_sales"] == "failed"
    assert states["crm.close_deal"] == "completed"
    assert run.record().state in ("rolled_back", "pending_review")  # the contact stays: review decides


def test_a_compensation_declared_through_one_tool_guard_holds_for_another_on_the_same_guard(guard: Guard) -> None:
    world = Funnel(slack_down=True)
    first = ToolGuard(guard, team="funnel", names=NAMES)

    @first.tool("crm.create_deal").compensation(name="crm.close_deal")
    def close_deal(ctx: RollbackContext) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]  # registered by the decorator
        world.closed.append(ctx.result["deal_id"])
        return {"closed": ctx.result["deal_id"]}

    agent, _ = _agent(guard, world, [tool_calls(DEAL), tool_calls(NOTIFY)])  # a second ToolGuard
    with guard.run("funnel", source_event_id="lead-7b") as run:
        agent.run_sync(PROMPT)
    assert world.closed == ["d-1"]
    assert {c.tool: c.state for c in run.calls()}["crm.create_deal"] == "rolled_back"


def test_the_same_event_replayed_repeats_no_effect_with_the_same_or_new_tool_call_ids(
    guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    first, _ = _agent(guard, world, [tool_calls(CONTACT), tool_calls(DEAL)])
    with guard.run("funnel", source_event_id="lead-8"):
        drive(first)
    assert (world.upserts, len(world.deals)) == (1, 1)

    with guard.run("funnel", source_event_id="lead-8"):  # the same script again: the same tool call ids
        replay = drive(first)
    # A real model names its tool calls afresh on every run: dedupe rests on the idempotency key, not the id.
    renamed = [
        tool_calls(tool_call("upsert_contact", {"email": "ann@acme.io", "name": "Ann"}, "call_9")),
        tool_calls(tool_call("create_deal", {"contact_id": "c-1", "amount_cents": 90000}, "call_10")),
    ]
    second, _ = _agent(guard, world, renamed)
    with guard.run("funnel", source_event_id="lead-8") as run:
        again = drive(second)
    assert (world.upserts, len(world.deals)) == (1, 1)
    for result in (replay, again):
        deal = _returns(result.all_messages())[-1]
        assert (deal.outcome, deal.content) == ("success", {"deal_id": "d-1"})
        assert deal.metadata == {"guard": {"deduplicated": True}}
    assert len(run.calls()) == 2  # no new call rows either


def test_a_tool_call_id_reused_in_another_run_is_a_call_of_that_run(guard: Guard, drive: Drive) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [tool_calls(CONTACT)])
    other = tool_calls(tool_call("upsert_contact", {"email": "bo@acme.io", "name": "Bo"}, "call_1"))
    agent_b, _ = _agent(guard, world, [other])
    with guard.run("funnel", source_event_id="lead-9a") as run_a:
        drive(agent)
    with guard.run("funnel", source_event_id="lead-9b") as run_b:
        result = drive(agent_b)
    assert world.upserts == 2 and set(world.contacts) == {"ann@acme.io", "bo@acme.io"}
    (ret,) = _returns(result.all_messages())
    assert (ret.outcome, ret.content) == ("success", {"contact_id": "c-2"})
    assert [c.call_id for c in run_a.calls()] == ["funnel:lead-9a/call_1"]
    assert [c.call_id for c in run_b.calls()] == ["funnel:lead-9b/call_1"]


def test_a_wrapped_toolset_is_guarded_and_the_agents_other_tools_are_not(guard: Guard) -> None:
    world, lookups = Funnel(), list[str]()

    def ping(host: str) -> str:
        """Ping a host."""
        lookups.append(host)
        return "pong"

    tools = ToolGuard(guard, team="funnel", names=NAMES)
    script = [tool_calls(tool_call("delete_all_leads", {}, "call_1"), tool_call("ping", {"host": "h"}, "call_2"))]
    agent = Agent(scripted_model(script), toolsets=[tools.wrap(world.toolset()), FunctionToolset([ping])])
    with guard.run("funnel", source_event_id="lead-10") as run:
        result = agent.run_sync(PROMPT)
    assert world.deletes == 0 and lookups == ["h"]
    outcomes = {r.tool_name: r.outcome for r in _returns(result.all_messages())}
    assert outcomes == {"delete_all_leads": "denied", "ping": "success"}
    assert [c.tool for c in run.calls()] == ["crm.delete_all_leads"]


def test_a_tool_pydantic_ai_holds_for_its_caller_never_runs_unrecorded(guard: Guard) -> None:
    world = Funnel()
    tools = ToolGuard(guard, team="funnel", names=NAMES)
    held = FunctionToolset([Tool(world.upsert_contact, requires_approval=True)])
    agent = Agent(
        scripted_model([tool_calls(CONTACT)]), toolsets=[tools.wrap(held)], output_type=[str, DeferredToolRequests]
    )
    with guard.run("funnel", source_event_id="lead-11") as run:
        first = agent.run_sync(PROMPT)
    assert isinstance(first.output, DeferredToolRequests) and world.upserts == 0
    assert run.calls() == []  # the framework's own gate came first: nothing was offered to Guard
    # Nothing waits in the ledger, so the block's clean end completed the run; a resume there runs nothing.
    assert run.record().state == "completed"
    with guard.run("funnel", source_event_id="lead-11"):
        second = agent.run_sync(
            message_history=first.all_messages(), deferred_tool_results=DeferredToolResults(approvals={"call_1": True})
        )
    assert world.upserts == 0
    (ret,) = _returns(second.all_messages())
    assert ret.outcome == "denied" and ret.metadata["guard"]["outcome"] == "RunNotRunning"


def test_a_tool_call_in_a_run_of_another_team_is_a_loud_usage_error(
    ledger_url: str, guard: Guard, policy_dir: Any
) -> None:
    (policy_dir / "other.yaml").write_text("team: other\nrules:\n  - {name: all, tools: ['*'], class: read}\n")
    other = Guard(policies=policy_dir, db=ledger_url, log_level="error")
    try:
        world = Funnel()
        agent, _ = _agent(other, world, [tool_calls(CONTACT)])
        with other.run("other", source_event_id="x"), pytest.raises(GuardUsageError, match="team 'funnel'"):
            agent.run_sync(PROMPT)
        assert world.upserts == 0
    finally:
        other.close()


def test_importing_the_adapter_without_pydantic_ai_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic_ai", None)  # None in sys.modules: the import fails
    monkeypatch.delitem(sys.modules, "guard_pydantic_ai")
    with pytest.raises(ImportError, match=r"pip install 'guard-middleware\[pydantic-ai\]'"):
        importlib.import_module("guard_pydantic_ai")
