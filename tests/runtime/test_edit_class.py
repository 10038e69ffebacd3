"""A reviewer's approved edit that the policy puts in another class: the call row says the class that ran.

The saga, recovery, incident reads and `guard runs show` go by the call row's class. An agent's `crm.tag` of
a few records is a `read`-class look-up the policy still holds for a person; a reviewer who edits it into a bulk
tag makes it a `compensable` write. That write must be undone like any other when the run fails later.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guard import (
    ApprovalPending,
    CallFailed,
    CallInDoubt,
    Found,
    Guard,
    OutcomeUnknown,
    ReconcileContext,
    RollbackContext,
)
from guard.ledger import Ledger
from guard.runtime.review import review

POLICY = """\
team: ops
reviewers: {rita: [ops]}
rules:
  - name: preview-tags
    tools: [crm.tag]
    class: read
    approval: {roles: [ops]}
  - name: bulk-tags
    tools: [crm.tag]
    when: {count: {gt: 10}}
    class: compensable
    approval: {roles: [ops]}
    on_failure: halt
  - name: untag
    tools: [crm.untag]
    class: idempotent
  - name: notify
    tools: [mail.send]
    class: compensable
"""


class World:
    def __init__(self) -> None:
        self.tagged = 0
        self.untagged: list[int] = []
        self.lost_answer = False  # the tag lands but its answer is lost (the tool cannot tell)
        self.looked_up: list[dict[str, Any]] = []  # the arguments each reconcile check was asked about
        self.found = False


@pytest.fixture
def ops(tmp_path: Path, ledger_url: str) -> Iterator[tuple[Guard, World]]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ops.yaml").write_text(POLICY)
    guard = Guard(policies=policies, db=ledger_url, actor="agent", approval="defer", log_level="error")
    world = World()

    @guard.tool(name="crm.tag")
    def tag(count: int) -> dict[str, int]:
        world.tagged += count
        if world.lost_answer:
            raise OutcomeUnknown("the CRM took the request; its answer was lost")
        return {"tagged": count}

    @tag.reconcile
    def look_up(ctx: ReconcileContext) -> Found | None:
        world.looked_up.append(dict(ctx.args))
        return Found({"tagged": ctx.args["count"]}) if world.found else None

    @tag.compensation(name="crm.untag", kind="undo")
    def untag(ctx: RollbackContext) -> None:
        world.untagged.append(int(ctx.args["count"]))

    @guard.tool(name="mail.send")
    def send(to: str) -> Any:
        raise ConnectionError("mail relay down")

    try:
        yield guard, world
    finally:
        guard.close()


def test_an_edit_that_changes_the_class_is_recorded_on_the_call_and_undone_by_the_saga(
    ledger: Ledger,
    ops: tuple[Guard, World],
) -> None:
    guard, world = ops
    with pytest.raises(ApprovalPending) as pending, guard.run("ops", source_event_id="evt-1") as run:
        guard.tool_named("crm.tag")(count=3)  # type: ignore[misc]
    call = guard.ledger.calls_of(run.run_id)[0]
    assert call.side_effect == "read"
    review(
        ledger,
        guard.policies,
        str(pending.value.approval_id),
        reviewer="rita",
        decision="approve",
        edited_args={"count": 50},
    )

    with pytest.raises(CallFailed), guard.run("ops", run_id=run.run_id):
        guard.tool_named("crm.tag")(count=3)  # type: ignore[misc]  # resumes: the approved edit runs
        guard.tool_named("mail.send")(to="ops@example.com")  # type: ignore[misc]
    assert world.tagged == 50
    tagged = guard.ledger.get_call(call.call_id)
    assert tagged is not None and tagged.side_effect == "compensable"
    assert world.untagged == [50]  # the saga undid the bulk tag the row now records as a write
    assert tagged.state == "rolled_back"
    moved = [
        e
        for e in guard.ledger.events_of(run.run_id)
        if e.call_id == call.call_id and e.from_state == e.to_state == "started"
    ]
    details = [json.loads(e.detail) for e in moved]
    assert [(d["was"], d["side_effect"], d["rule"]) for d in details] == [("read", "compensable", "bulk-tags")]
    assert guard.ledger.verify_chain().ok


def test_the_reconcile_check_of_an_edited_call_is_asked_about_the_arguments_that_ran(
    ledger: Ledger, ops: tuple[Guard, World]
) -> None:
    guard, world = ops
    with pytest.raises(ApprovalPending) as pending, guard.run("ops", source_event_id="evt-2") as run:
        guard.tool_named("crm.tag")(count=3)  # type: ignore[misc]
    review(
        ledger,
        guard.policies,
        str(pending.value.approval_id),
        reviewer="rita",
        decision="approve",
        edited_args={"count": 50},
    )
    world.lost_answer = True
    with pytest.raises(CallInDoubt), guard.run("ops", run_id=run.run_id):
        guard.tool_named("crm.tag")(count=3)  # type: ignore[misc]
    world.found = True
    report = guard.recover()  # a later pass: the check finds the 50 tags, nothing runs again
    assert report.reconciled == 1 and world.tagged == 50
    assert world.looked_up == [{"count": 50}, {"count": 50}]  # at the failure, and by recovery: never the 3
    [call] = guard.ledger.calls_of(run.run_id)
    assert (call.state, call.side_effect) == ("completed", "compensable")
