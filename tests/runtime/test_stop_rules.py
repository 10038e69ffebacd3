"""Stop rules (policy `stop:`): a runaway agent's next call is denied and recorded before it starts, per run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runtime_support import Driver, Recorder

from guard import CallDenied, Guard

LOOP_POLICY = """\
team: loop
stop:
  repeats: 2
  max_calls:
    "outreach.send_*": 3
rules:
  - name: search
    tools: [crm.search]
    class: read
  - name: outreach
    tools: ["outreach.send_*"]
    class: compensable
"""


@pytest.fixture
def loop_guard(tmp_path: Path, db_path: Path) -> Iterator[Callable[[], Guard]]:
    folder = tmp_path / "loop-policies"
    folder.mkdir()
    (folder / "loop.yaml").write_text(LOOP_POLICY)
    made: list[Guard] = []

    def make() -> Guard:
        guard = Guard(policies=folder, db=str(db_path), log_level="error")
        made.append(guard)
        return guard

    yield make
    for guard in made:
        guard.close()


def test_the_same_call_past_its_repeats_is_denied_and_recorded_and_stays_denied(
        loop_guard: Callable[[], Guard], driver: Driver) -> None:
    guard = loop_guard()
    body = Recorder(result={"hits": []})
    search = driver.tool(guard, body, name="crm.search")
    with driver.run(guard, "loop") as run:
        run.call(search, q="ada")
        run.call(search, q="ada")
        for _ in range(2):  # the third, and the fourth: an agent that keeps looping stays stopped
            with pytest.raises(CallDenied, match=r"stop rule: crm.search was called with these same arguments 2"):
                run.call(search, q="ada")
        run.call(search, q="grace")  # another course goes on
        run.call(search, q="ada")  # and the count starts again
        run_id = run.run_id

    assert [c["q"] for c in body.calls] == ["ada", "ada", "grace", "ada"]
    calls = guard.ledger.calls_of(run_id)
    assert [c.state for c in calls] == ["completed", "completed", "denied", "denied", "completed", "completed"]
    assert all("stop.repeats: 2" in (c.reason or "") for c in calls if c.state == "denied")


def test_more_calls_of_a_tool_than_a_run_may_make_are_denied_and_the_next_run_starts_afresh(
        loop_guard: Callable[[], Guard], driver: Driver) -> None:
    guard = loop_guard()
    body = Recorder(result={"sent": True})
    send_email = driver.tool(guard, body, name="outreach.send_email")
    send_sms = driver.tool(guard, body, name="outreach.send_sms")
    with driver.run(guard, "loop") as run:
        run.call(send_email, to="a@example.com")
        run.call(send_sms, to="+100")
        run.call(send_email, to="b@example.com")
        with pytest.raises(CallDenied, match=r"already made 3 call\(s\) of outreach.send_\*") as stopped:
            run.call(send_sms, to="+200")
        first = run.run_id
    assert stopped.value.fields["state"] == "denied"
    assert len(body.calls) == 3

    with driver.run(guard, "loop") as again:  # the limit is per run
        again.call(send_email, to="c@example.com")
    assert len(body.calls) == 4
    assert [c.state for c in guard.ledger.calls_of(first)] == ["completed"] * 3 + ["denied"]


def test_a_policy_without_stop_rules_sends_none_to_the_ledger(make_guard: Callable[..., Guard]) -> None:
    guard = make_guard(log_level="error")
    decision = guard.policies.classify("onboarding", "crm.find_contact", {"email": "a@example.com"})
    assert decision.stop.repeats is None and decision.stop.max_calls == ()
