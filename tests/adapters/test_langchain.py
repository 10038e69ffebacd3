"""GuardMiddleware and guard_tool with real LangChain classes: a `create_agent` agent driven by a scripted chat
model that emits tool calls, real LangChain tools, a real SQLite ledger. Sync (`invoke`) and async (`ainvoke`)
drivers run the same scenarios."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from guard_langchain import GuardMiddleware, guard_tool
from guard_langchain.testing import ScriptedChatModel, tool_call, tool_calls
from langchain.agents import create_agent  # pyright: ignore[reportUnknownVariableType]  # an overload names an unparametrised BaseCheckpointSaver
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from lc_world import NAMES, Funnel

from guard import CallDenied, Guard, GuardUsageError, RollbackContext
from guard.ledger import Ledger
from guard.runtime.review import review

Drive = Callable[[Any, Any, Any], dict[str, Any]]
USER = {"messages": [{"role": "user", "content": "a new lead signed up: ann@acme.io"}]}


def _sync(agent: Any, inp: Any, config: Any) -> dict[str, Any]:
    return agent.invoke(inp, config)


def _async(agent: Any, inp: Any, config: Any) -> dict[str, Any]:
    return asyncio.run(agent.ainvoke(inp, config))  # the task copies this context: it sees the open run


@pytest.fixture(params=["sync", "async"])
def drive(request: pytest.FixtureRequest) -> Drive:
    return _sync if request.param == "sync" else _async


def _agent(guard: Guard, world: Funnel, script: list[Any], **kw: Any) -> tuple[Any, GuardMiddleware]:
    mw = GuardMiddleware(guard, team="funnel", names=NAMES)
    return create_agent(ScriptedChatModel(script=script), world.tools(), middleware=[mw], **kw), mw


def _tool_messages(out: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in out["messages"] if isinstance(m, ToolMessage)]


def _offered(guard: Guard, run_id: str, call_id: str) -> int:
    return sum(1 for e in guard.ledger.events_of(run_id) if e.call_id == call_id and "offered" in e.path)


CONTACT = tool_call("upsert_contact", {"email": "ann@acme.io", "name": "Ann"}, "tc-contact")
DEAL = tool_call("create_deal", {"contact_id": "c-1", "amount_cents": 90000}, "tc-deal")
NOTIFY = tool_call("notify_sales", {"deal_id": "d-1"}, "tc-notify")
EMAIL = tool_call("send_prospect_email", {"email": "ann@acme.io", "template": "intro"}, "tc-email")


def test_an_allowed_call_runs_once_under_the_tool_call_id_and_the_run_completes(guard: Guard, drive: Drive) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [tool_calls(CONTACT)])
    with guard.run("funnel", source_event_id="lead-1") as run:
        out = drive(agent, USER, None)
    (msg,) = _tool_messages(out)
    assert msg.status == "success" and '"contact_id": "c-1"' in msg.text
    assert world.upserts == 1
    (call,) = run.calls()
    assert (call.call_id, call.tool, call.state, call.result) == (
        "tc-contact",
        "crm.upsert_contact",
        "completed",
        {"contact_id": "c-1"},
    )
    assert run.record().state == "completed"


def test_a_denied_call_never_runs_and_the_model_reads_the_reason_in_an_error_tool_message(
    guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    seen: list[BaseMessage] = []

    def after_denial(messages: Sequence[BaseMessage]) -> AIMessage:
        seen.append(messages[-1])
        return AIMessage(content="I may not delete leads.")

    agent, _ = _agent(guard, world, [tool_calls(tool_call("delete_all_leads", {}, "tc-del")), after_denial])
    with guard.run("funnel", source_event_id="lead-2") as run:
        out = drive(agent, USER, None)
    assert world.deletes == 0
    (msg,) = seen
    assert isinstance(msg, ToolMessage) and msg.status == "error" and msg.tool_call_id == "tc-del"
    assert "mass deletes are not allowed" in msg.text
    assert msg.artifact["guard"]["outcome"] == "CallDenied"
    assert [(c.call_id, c.state) for c in run.calls()] == [("tc-del", "denied")]
    assert out["messages"][-1].content == "I may not delete leads."


class Reviewer(threading.Thread):
    """A reviewer who sees only the ledger: waits for the approval to show up, then decides."""

    def __init__(self, ledger: Ledger, decision: str, reason: str | None = None) -> None:
        super().__init__(daemon=True)
        self.ledger, self.decision, self.reason = ledger, decision, reason
        self.seen_args: dict[str, Any] | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pending = self.ledger.list_approvals(team="funnel")
            if pending:
                approval = pending[0]
                self.seen_args = {"tool": approval.tool, "args_json": approval.args_json}
                self.ledger.decide(
                    approval.approval_id,
                    reviewer="maria",
                    decision=self.decision,  # pyright: ignore[reportArgumentType]  # "approve" | "reject"
                    reviewer_roles=frozenset({"marketing"}),
                    reason=self.reason,
                )
                return
            self.done.wait(0.005)  # a poll interval of the ledger, not a synchronisation


def test_a_blocking_wait_for_approval_resumes_and_runs_the_call_once_approved(
    ledger: Ledger, guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL)])
    reviewer = Reviewer(ledger, "approve")
    reviewer.start()
    with guard.run("funnel", source_event_id="lead-3") as run:
        out = drive(agent, USER, None)
    reviewer.join(5)
    assert reviewer.seen_args is not None and reviewer.seen_args["tool"] == "email.send_prospect"
    assert world.emails == [{"email": "ann@acme.io", "template": "intro"}]
    (msg,) = _tool_messages(out)
    assert msg.status == "success"
    assert [(c.call_id, c.state) for c in run.calls()] == [("tc-email", "completed")]
    assert run.record().state == "completed"


def test_a_rejected_call_never_runs_and_the_model_reads_the_reviewers_reason(
    ledger: Ledger, guard: Guard, drive: Drive
) -> None:
    world = Funnel()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL)])
    reviewer = Reviewer(ledger, "reject", reason="not before the call with sales")
    reviewer.start()
    with guard.run("funnel", source_event_id="lead-4") as run:
        out = drive(agent, USER, None)
    reviewer.join(5)
    assert world.emails == []
    (msg,) = _tool_messages(out)
    assert msg.status == "error" and "not before the call with sales" in msg.text
    assert msg.artifact["guard"]["outcome"] == "CallRejected"
    assert [(c.call_id, c.state) for c in run.calls()] == [("tc-email", "rejected")]


def test_a_failure_compensates_the_earlier_deal_and_the_model_gets_an_error(guard: Guard, drive: Drive) -> None:
    world = Funnel(slack_down=True)
    agent, mw = _agent(guard, world, [tool_calls(CONTACT), tool_calls(DEAL), tool_calls(NOTIFY)])

    @mw.tool("crm.create_deal").compensation(name="crm.close_deal")
    def close_deal(ctx: RollbackContext) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]  # registered by the decorator
        world.closed.append(ctx.result["deal_id"])
        return {"closed": ctx.result["deal_id"]}

    with guard.run("funnel", source_event_id="lead-5") as run:
        out = drive(agent, USER, None)
    assert world.closed == ["d-1"]  # the deal this run opened, closed once
    assert world.notices == []
    notify = _tool_messages(out)[-1]
    assert notify.status == "error" and "slack is down" in notify.text
    assert notify.artifact["guard"]["outcome"] == "CallFailed"
    states = {c.tool: c.state for c in run.calls()}
    assert states["crm.create_deal"] == "rolled_back"
    assert states["slack.notify_sales"] == "failed"
    assert states["crm.close_deal"] == "completed"
    assert run.record().state in ("rolled_back", "pending_review")  # the contact stays: review decides


def test_a_compensation_declared_through_one_middleware_holds_for_another_on_the_same_guard(
    guard: Guard, drive: Drive
) -> None:
    world = Funnel(slack_down=True)
    first = GuardMiddleware(guard, team="funnel", names=NAMES)

    @first.tool("crm.create_deal").compensation(name="crm.close_deal")
    def close_deal(ctx: RollbackContext) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]  # registered by the decorator
        world.closed.append(ctx.result["deal_id"])
        return {"closed": ctx.result["deal_id"]}

    agent, second = _agent(guard, world, [tool_calls(DEAL), tool_calls(NOTIFY)])  # a second GuardMiddleware
    with guard.run("funnel", source_event_id="lead-5b") as run:
        drive(agent, USER, None)
    assert second.tool("crm.create_deal") is first.tool("crm.create_deal")
    assert world.closed == ["d-1"]
    assert {c.tool: c.state for c in run.calls()}["crm.create_deal"] == "rolled_back"


def test_the_same_event_run_again_repeats_no_effect_even_with_new_tool_call_ids(guard: Guard, drive: Drive) -> None:
    world = Funnel()
    first, _ = _agent(guard, world, [tool_calls(CONTACT), tool_calls(DEAL)])
    with guard.run("funnel", source_event_id="lead-6"):
        drive(first, USER, None)
    assert (world.upserts, len(world.deals)) == (1, 1)
    # A real model names its tool calls afresh on every run: dedupe rests on the idempotency key, not the id.
    again = [
        tool_calls(tool_call("upsert_contact", {"email": "ann@acme.io", "name": "Ann"}, "tc-contact-2")),
        tool_calls(tool_call("create_deal", {"contact_id": "c-1", "amount_cents": 90000}, "tc-deal-2")),
    ]
    second, _ = _agent(guard, world, again)
    with guard.run("funnel", source_event_id="lead-6") as run:
        out = drive(second, USER, None)
    assert (world.upserts, len(world.deals)) == (1, 1)
    deal = _tool_messages(out)[-1]
    assert deal.status == "success" and '"deal_id": "d-1"' in deal.text
    assert deal.artifact == {"guard": {"deduplicated": True}}
    assert len(run.calls()) == 2  # no new call rows either


def test_deferred_approval_pauses_with_a_langgraph_interrupt_and_a_resume_offers_nothing_twice(
    ledger: Ledger, deferring_guard: Guard, drive: Drive
) -> None:
    guard, world = deferring_guard, Funnel()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL)], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "lead-7"}}
    with guard.run("funnel", source_event_id="lead-7") as run:
        out = drive(agent, USER, config)
    (pause,) = out["__interrupt__"]
    assert pause.value["guard"] == "approval_pending" and pause.value["call_id"] == "tc-email"
    assert run.record().state == "paused" and world.emails == []

    with guard.run("funnel", source_event_id="lead-7"):  # resumed before anyone decided: it pauses again
        out = drive(agent, Command(resume="checked"), config)
    assert "__interrupt__" in out and world.emails == []

    (approval,) = guard.ledger.list_approvals(team="funnel")
    ledger.decide(approval.approval_id, reviewer="maria", decision="approve", reviewer_roles=frozenset({"marketing"}))
    with guard.run("funnel", source_event_id="lead-7") as run:
        out = drive(agent, Command(resume="approved"), config)
    assert "__interrupt__" not in out
    assert world.emails == [{"email": "ann@acme.io", "template": "intro"}]
    assert _offered(guard, run.run_id, "tc-email") == 1
    assert [(c.call_id, c.state) for c in run.calls()] == [("tc-email", "completed")]
    assert run.record().state == "completed"


def test_a_reviewers_edit_of_the_arguments_is_what_langchain_runs(
    ledger: Ledger, deferring_guard: Guard, drive: Drive
) -> None:
    guard, world = deferring_guard, Funnel()
    agent, _ = _agent(guard, world, [tool_calls(EMAIL)], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "lead-9"}}
    with guard.run("funnel", source_event_id="lead-9"):
        assert "__interrupt__" in drive(agent, USER, config)
    (approval,) = guard.ledger.list_approvals(team="funnel")
    edited = {**json.loads(approval.args_json), "template": "intro-short"}
    review(ledger, guard.policies, approval.approval_id, reviewer="maria", decision="approve", edited_args=edited)
    with guard.run("funnel", source_event_id="lead-9") as run:
        out = drive(agent, Command(resume="approved"), config)
    assert "__interrupt__" not in out
    assert world.emails == [{"email": "ann@acme.io", "template": "intro-short"}]  # the edit ran, not the ask
    assert [(c.call_id, c.state) for c in run.calls()] == [("tc-email", "completed")]


def test_guard_tool_answers_a_tool_call_with_an_error_message_and_plain_python_with_the_typed_error(
    guard: Guard,
) -> None:
    world = Funnel()
    tools = {t.name: t for t in world.tools()}
    delete = guard_tool(guard, tools["delete_all_leads"], name="crm.delete_all_leads")
    contact = guard_tool(guard, tools["upsert_contact"], name="crm.upsert_contact")
    assert (contact.name, contact.args_schema) == (tools["upsert_contact"].name, tools["upsert_contact"].args_schema)
    with guard.run("funnel", source_event_id="lead-8") as run:
        answer = delete.invoke(tool_call("delete_all_leads", {}, "tc-x"))
        with pytest.raises(CallDenied):
            delete.invoke({})
        ok = contact.invoke(tool_call("upsert_contact", {"email": "b@acme.io", "name": "Bo"}, "tc-y"))
    assert isinstance(answer, ToolMessage) and answer.status == "error" and world.deletes == 0
    assert isinstance(ok, ToolMessage) and ok.status == "success" and world.upserts == 1
    assert {c.call_id: c.state for c in run.calls()}["tc-y"] == "completed"


def test_a_tool_call_in_a_run_of_another_team_is_a_loud_usage_error(
    ledger_url: str, guard: Guard, policy_dir: Any
) -> None:
    (policy_dir / "other.yaml").write_text("team: other\nrules:\n  - {name: all, tools: ['*'], class: read}\n")
    other = Guard(policies=policy_dir, db=ledger_url, log_level="error")
    try:
        agent, _ = _agent(other, Funnel(), [tool_calls(CONTACT)])
        with other.run("other", source_event_id="x"), pytest.raises(GuardUsageError, match="team 'funnel'"):
            agent.invoke(USER)
    finally:
        other.close()
