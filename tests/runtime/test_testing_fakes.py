"""guard.testing: the fakes Guard ships for adapter authors and policy owners, used against a real ledger."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from guard import CallRejected, Guard
from guard.ledger import Ledger
from guard.testing import RecordingTool, ScriptedReviewer

BIG = {"customer_id": "c-1", "amount_cents": 60000}


def test_a_scripted_reviewer_approves_through_the_ledger_and_the_blocked_call_runs_once(
    ledger: Ledger,
    make_guard: Callable[..., Guard],
) -> None:
    guard = make_guard(approval_timeout=10.0)
    body = RecordingTool(default={"invoice_id": "inv-1"})
    tool = guard.tool(body, name="billing.create_invoice")
    with (
        ScriptedReviewer(ledger, lambda a: "approve", reviewer="alice", roles={"finance"}) as reviewer,
        guard.run("onboarding"),
    ):
        assert tool(**BIG) == {"invoice_id": "inv-1"}
    assert body.calls == [BIG]
    assert [d for _, d in reviewer.decided] == ["approve"]


def test_a_scripted_reviewer_without_the_role_is_refused_like_a_person(
    ledger: Ledger, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval_timeout=10.0)
    body = RecordingTool()
    tool = guard.tool(body, name="billing.create_invoice")
    with (
        ScriptedReviewer(ledger, lambda a: "approve", reviewer="sam", roles={"support"}) as outsider,
        ScriptedReviewer(
            ledger,
            lambda a: "reject" if outsider.refused else None,
            reviewer="alice",
            roles={"finance"},
            reason="not this month",
        ),
        guard.run("onboarding"),
        pytest.raises(CallRejected, match="not this month"),
    ):
        tool(**BIG)
    assert outsider.refused and outsider.refused[0][0] == "forbidden"
    assert body.calls == []


def test_a_recording_tool_answers_from_its_script_in_order() -> None:
    tool = RecordingTool([{"n": 1}, ValueError("boom")], default="done")
    assert tool(a=1) == {"n": 1}
    with pytest.raises(ValueError, match="boom"):
        tool(a=2)
    assert tool(a=3) == "done"
    assert tool.calls == [{"a": 1}, {"a": 2}, {"a": 3}]
