"""`FrameworkBridge` on plain Python, no framework: a stand-in "framework" whose execution of a call is a function
of the arguments Guard runs and whose output is a `Reply` the bridge records as its payload. Each scenario runs
through `call` (sync) and `acall` (async, on an event loop) against a real SQLite ledger file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from guard import (
    ApprovalPending,
    BridgedCall,
    CallFailed,
    FrameworkBridge,
    Guard,
    GuardUsageError,
    RollbackContext,
    args_hash,
)
from guard.canonical import canonical_json
from guard.ledger import CallRequest, Ledger, new_id
from guard.runtime.review import review

POLICY = """\
team: desk
reviewers:
  maria: [marketing]
rules:
  - {name: contact, tools: [crm.upsert_contact], class: idempotent}
  - {name: deal, tools: [crm.create_deal], class: compensable, on_failure: compensate}
  - {name: close-deal, tools: [crm.close_deal], class: idempotent}
  - {name: notify, tools: [slack.notify_sales], class: compensable, on_failure: compensate}
  - name: prospect-email
    tools: [email.send_prospect]
    class: irreversible
    approval: {roles: [marketing], expires_after: 1h}
"""


@dataclass(frozen=True)
class Reply:
    """What the stand-in framework's execution returns; the ledger records its payload."""

    payload: Any
    error: bool = False


def _record(out: Reply) -> Any:
    return out.payload


def _check(out: Reply) -> None:
    if out.error:
        raise RuntimeError(f"the tool reported an error: {out.payload}")


class ReplyBridge(FrameworkBridge):
    """The bridge of the stand-in framework: records a reply's payload, fails on an error reply."""

    def __init__(
        self,
        guard: Guard,
        name: str,
        *,
        external_ids: Mapping[str, str] | None = None,
        fallback: Callable[[Mapping[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(
            guard,
            name,
            record=_record,
            check=_check,
            external_ids=external_ids,
            fallback=fallback,
            framework="stand-in",
        )


class Framework:
    """Runs the stand-in framework's tools, keeping the arguments of every execution."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def execution(self, tool: str, reply: Callable[[Mapping[str, Any]], Reply]) -> Callable[[Mapping[str, Any]], Reply]:
        def execute(args: Mapping[str, Any]) -> Reply:
            self.ran.append((tool, dict(args)))
            return reply(args)

        return execute


Bridging = Callable[[FrameworkBridge, Mapping[str, Any], str | None, Callable[[Mapping[str, Any]], Reply]], BridgedCall]


def _sync(
    bridge: FrameworkBridge, args: Mapping[str, Any], call_id: str | None, execute: Callable[[Mapping[str, Any]], Reply]
) -> BridgedCall:
    return bridge.call(args, call_id, execute)


def _async(
    bridge: FrameworkBridge, args: Mapping[str, Any], call_id: str | None, execute: Callable[[Mapping[str, Any]], Reply]
) -> BridgedCall:
    async def aexecute(run: Mapping[str, Any]) -> Reply:
        return execute(run)

    return asyncio.run(bridge.acall(args, call_id, aexecute))  # the task copies this context: it sees the run


@pytest.fixture(params=["sync", "async"])
def bridging(request: pytest.FixtureRequest) -> Bridging:
    return _sync if request.param == "sync" else _async


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "desk.yaml").write_text(POLICY)
    return folder


@pytest.fixture
def guard(make_guard: Callable[..., Guard]) -> Guard:
    return make_guard(log_level="error", worker_id="fresh")  # on this module's policy_dir


@pytest.fixture
def deferring_guard(make_guard: Callable[..., Guard]) -> Guard:
    return make_guard(log_level="error", approval="defer")


def _contact(args: Mapping[str, Any]) -> Reply:
    return Reply({"contact_id": f"c-{args['email']}"})


def test_a_call_runs_the_in_flight_execution_with_guards_arguments_and_records_the_framework_output(
    guard: Guard, bridging: Bridging
) -> None:
    world = Framework()
    bridge = ReplyBridge.for_name(guard, "crm.upsert_contact")
    with guard.run("desk", source_event_id="lead-1") as run:
        answer = bridging(bridge, {"email": "ann@acme.io"}, "tc-1", world.execution("upsert", _contact))
    assert world.ran == [("upsert", {"email": "ann@acme.io"})]
    assert answer == BridgedCall(True, Reply({"contact_id": "c-ann@acme.io"}), {"contact_id": "c-ann@acme.io"})
    (call,) = run.calls()
    assert (call.call_id, call.tool, call.state, call.result) == (
        "tc-1",
        "crm.upsert_contact",
        "completed",
        {"contact_id": "c-ann@acme.io"},
    )


def test_a_deduplicated_call_runs_nothing_and_returns_the_recorded_value(guard: Guard, bridging: Bridging) -> None:
    world = Framework()
    bridge = ReplyBridge.for_name(guard, "crm.upsert_contact")
    execute = world.execution("upsert", _contact)
    with guard.run("desk", source_event_id="lead-2"):
        bridging(bridge, {"email": "ann@acme.io"}, "tc-1", execute)
    with guard.run("desk", source_event_id="lead-2"):  # the same event delivered again, a model's new call id
        again = bridging(bridge, {"email": "ann@acme.io"}, "tc-1-again", execute)
    assert again == BridgedCall(False, None, {"contact_id": "c-ann@acme.io"})
    assert len(world.ran) == 1


def test_an_approval_with_edited_arguments_runs_the_edit_not_the_ask(
    ledger: Ledger, deferring_guard: Guard, bridging: Bridging
) -> None:
    guard, world = deferring_guard, Framework()
    bridge = ReplyBridge.for_name(guard, "email.send_prospect")
    execute = world.execution("email", lambda args: Reply(f"sent {args['template']}"))
    asked = {"email": "ann@acme.io", "template": "intro"}
    with guard.run("desk", source_event_id="lead-3"), pytest.raises(ApprovalPending):
        bridging(bridge, asked, "tc-email", execute)
    assert world.ran == []
    (approval,) = guard.ledger.list_approvals(team="desk")
    edited = {**json.loads(approval.args_json), "template": "intro-short"}
    review(ledger, guard.policies, approval.approval_id, reviewer="maria", decision="approve", edited_args=edited)
    with guard.run("desk", source_event_id="lead-3") as run:
        answer = bridging(bridge, asked, "tc-email", execute)
    assert world.ran == [("email", {"email": "ann@acme.io", "template": "intro-short"})]
    assert answer == BridgedCall(True, Reply("sent intro-short"), "sent intro-short")
    assert [(c.call_id, c.state) for c in run.calls()] == [("tc-email", "completed")]


def test_an_output_the_check_calls_an_error_is_a_recorded_failure(guard: Guard, bridging: Bridging) -> None:
    world = Framework()
    bridge = ReplyBridge.for_name(guard, "crm.upsert_contact")
    execute = world.execution("upsert", lambda args: Reply("CRM said no", error=True))
    with guard.run("desk", source_event_id="lead-4") as run, pytest.raises(CallFailed) as failed:
        bridging(bridge, {"email": "ann@acme.io"}, "tc-1", execute)
    assert "the tool reported an error: CRM said no" in str(failed.value.__cause__)
    assert [c.state for c in run.calls()] == ["failed"]


def _left_started(ledger: Ledger, run_id: str, tool: str, args: dict[str, Any]) -> str:
    """What a worker that died right after `started` committed leaves behind (its lease already ran out)."""
    ledger.open_run(run_id, "desk", actor="agent")
    call_id = new_id("call")
    offer = ledger.offer(
        CallRequest(
            call_id=call_id,
            run_id=run_id,
            team="desk",
            tool=tool,
            args_json=canonical_json(args).decode(),
            args_hash=args_hash(args),
            idempotency_key=f"k:{call_id}",
            verdict="allow",
            side_effect="idempotent",
            rule=None,
            reason="",
            policy_version="v",
            actor="agent",
            worker="dead",
            lease_ttl=0.0,
        )
    )
    assert offer.kind == "started"
    return call_id


def test_recovery_with_no_call_in_flight_runs_the_fallback_with_the_recorded_arguments(
    ledger: Ledger, guard: Guard
) -> None:
    world = Framework()
    ReplyBridge.for_name(guard, "crm.upsert_contact", fallback=world.execution("fallback", _contact))
    call_id = _left_started(ledger, "r1", "crm.upsert_contact", {"email": "bo@acme.io"})
    report = guard.recover()
    assert (report.claimed, report.retried) == (1, 1)
    assert world.ran == [("fallback", {"email": "bo@acme.io"})]
    call = guard.ledger.get_call(call_id)
    assert call is not None and (call.state, call.result) == ("completed", {"contact_id": "c-bo@acme.io"})


def test_recovery_without_a_fallback_records_a_failure_naming_what_is_missing(ledger: Ledger, guard: Guard) -> None:
    ReplyBridge.for_name(guard, "crm.upsert_contact")
    call_id = _left_started(ledger, "r2", "crm.upsert_contact", {"email": "bo@acme.io"})
    guard.recover()
    call = guard.ledger.get_call(call_id)
    assert call is not None and call.state == "failed"
    assert "no stand-in call in flight and no fallback" in (call.error or "")


def test_a_bridge_never_runs_the_execution_in_flight_for_another_bridge(guard: Guard) -> None:
    world = Framework()
    contact = ReplyBridge.for_name(guard, "crm.upsert_contact", fallback=world.execution("contact-fallback", _contact))
    deal = ReplyBridge.for_name(guard, "crm.create_deal")

    def deal_execution(args: Mapping[str, Any]) -> Reply:  # reaches the contact tool by name, as recovery would
        world.ran.append(("deal", dict(args)))
        found = guard.tool_named("crm.upsert_contact")
        assert found is not None
        found.call_with({"email": "cy@acme.io"}, call_id="tc-inner")
        return Reply({"deal_id": "d-1"})

    with guard.run("desk", source_event_id="lead-5"):
        deal.call({"contact_id": "c-1"}, "tc-deal", deal_execution)
    assert world.ran == [("deal", {"contact_id": "c-1"}), ("contact-fallback", {"email": "cy@acme.io"})]
    assert contact.registered(guard, "crm.upsert_contact") is contact


def test_a_compensation_declared_through_one_bridge_holds_for_a_second_on_the_same_guard(
    guard: Guard, bridging: Bridging
) -> None:
    world, closed = Framework(), list[str]()
    first = ReplyBridge.for_name(guard, "crm.create_deal", external_ids={"deal": "deal_id"})

    @first.compensation(name="crm.close_deal", kind="cancel")
    def close_deal(ctx: RollbackContext) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]  # registered by the decorator
        closed.append(ctx.external_ids["deal"])
        return {"closed": ctx.external_ids["deal"]}

    second = ReplyBridge.for_name(guard, "crm.create_deal")  # another adapter object asking for the same name
    notify = ReplyBridge.for_name(guard, "slack.notify_sales")

    def slack_down(args: Mapping[str, Any]) -> Reply:
        raise ConnectionError("slack is down")

    with guard.run("desk", source_event_id="lead-6") as run:
        bridging(second, {"contact_id": "c-1"}, "tc-deal", world.execution("deal", lambda _: Reply({"deal_id": "d-1"})))
        with pytest.raises(CallFailed):
            bridging(notify, {"deal_id": "d-1"}, "tc-notify", world.execution("notify", slack_down))
    assert second is first
    assert closed == ["d-1"]
    assert {c.tool: c.state for c in run.calls()} == {
        "crm.create_deal": "rolled_back",
        "slack.notify_sales": "failed",
        "crm.close_deal": "completed",
    }


def test_a_name_bridged_for_one_framework_is_refused_to_another(guard: Guard) -> None:
    ReplyBridge.for_name(guard, "crm.upsert_contact")
    with pytest.raises(GuardUsageError, match="already bridged for stand-in"):
        FrameworkBridge.for_name(guard, "crm.upsert_contact")


def test_a_second_declaration_of_other_external_ids_is_refused(guard: Guard) -> None:
    ReplyBridge.for_name(guard, "crm.create_deal", external_ids={"deal": "deal_id"})
    assert ReplyBridge.for_name(guard, "crm.create_deal").external_ids == {"deal": "deal_id"}
    with pytest.raises(GuardUsageError, match="external_ids"):
        ReplyBridge.for_name(guard, "crm.create_deal", external_ids={"deal": "id"})


def test_the_default_record_reads_a_json_object_out_of_a_text_and_keeps_anything_else() -> None:
    parse = FrameworkBridge.parse_json_text
    assert parse('{"deal_id": "d-1"}') == {"deal_id": "d-1"}
    assert parse("{not json") == "{not json"
    assert parse("[1, 2]") == "[1, 2]"
    assert parse({"deal_id": "d-1"}) == {"deal_id": "d-1"}
