"""The same event delivered twice while its call waits for approval, on a real ledger with two workers: both
deliveries wait on the one approval; once it is approved the call runs once, and the delivery that did not run
it gets the recorded result (never `CallDenied: completed`, never a second effect)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_support import Agent

from guard import Guard, GuardedTool
from guard.ledger import CallPathLedger, CallState, Ledger
from guard.runtime.waiting import Waiter
from guard.testing import poll

POLICY = """\
team: mail
reviewers: {sam: [support]}
rules:
  - {name: welcome, tools: [email.send], class: irreversible, approval: {roles: [support]}}
"""


class WatchedWaiter(Waiter):
    """The real waiter, telling the test when its worker waits, and (`late`) reading the call's state only once
    the other delivery has finished it: a worker in another process whose poll comes round late."""

    late: bool
    waiting: threading.Event
    waiting_out: threading.Event

    def __init__(self, ledger: CallPathLedger, *, late: bool) -> None:
        super().__init__(ledger)
        object.__setattr__(self, "late", late)  # the real Waiter is a frozen dataclass
        object.__setattr__(self, "waiting", threading.Event())
        object.__setattr__(self, "waiting_out", threading.Event())

    def _looked(self, call_id: str, state: str | None) -> str | None:
        if not self.late:
            return state
        poll(
            lambda: self.ledger.call_state(call_id) == CallState.COMPLETED,
            what="the other delivery completing the call",
        )
        return self.ledger.call_state(call_id)

    def wait(self, call_id: str, approval_id: str, expires_at: float, timeout: float) -> str | None:
        self.waiting.set()
        return self._looked(call_id, super().wait(call_id, approval_id, expires_at, timeout))

    async def await_(self, call_id: str, approval_id: str, expires_at: float, timeout: float) -> str | None:
        self.waiting.set()
        state = await super().await_(call_id, approval_id, expires_at, timeout)
        return await asyncio.to_thread(self._looked, call_id, state)

    def wait_out(self, call_id: str, timeout: float) -> str | None:
        self.waiting_out.set()
        return super().wait_out(call_id, timeout)

    async def await_out(self, call_id: str, timeout: float) -> str | None:
        self.waiting_out.set()
        return await super().await_out(call_id, timeout)


class Mailer:
    """The email system: counts every message sent; the first send can be held at a gate."""

    def __init__(self, hold: bool) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        self.sending = threading.Event()

    def send(self, to: str) -> dict[str, str]:
        self.sent.append({"to": to})
        self.sending.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return {"message_id": f"m-{len(self.sent)}"}


def worker(
    tmp_path: Path, ledger_url: str, name: str, late: bool, mailer: Mailer
) -> tuple[Guard, GuardedTool, WatchedWaiter]:
    policies = tmp_path / "mail-policies"
    policies.mkdir(exist_ok=True)
    (policies / "mail.yaml").write_text(POLICY)
    guard = Guard(
        policies=policies, db=ledger_url, worker_id=name, approval_timeout=20, log_level="error", recover_on_start=False
    )
    guard.waiter = watched = WatchedWaiter(guard.waiter.ledger, late=late)  # the Guard's own waiter's ledger
    return guard, guard.tool(mailer.send, name="email.send"), watched


def delivery(guard: Guard, tool: GuardedTool, kind: str) -> Callable[[], Any]:
    def sync() -> Any:
        with guard.run("mail", source_event_id="signup-1"):
            return tool(to="ada@example.com")

    async def in_a_loop() -> Any:
        async with guard.run("mail", source_event_id="signup-1"):
            return await tool.acall_with({"to": "ada@example.com"})

    return sync if kind == "sync" else (lambda: asyncio.run(in_a_loop()))


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("second_looks", ["late", "while_it_runs"])
def test_a_second_delivery_waiting_on_the_same_approval_gets_the_recorded_result_and_nothing_runs_twice(
    ledger: Ledger, tmp_path: Path, ledger_url: str, kind: str, second_looks: str
) -> None:
    late = second_looks == "late"
    mailer = Mailer(hold=not late)
    first, first_tool, first_waiter = worker(tmp_path, ledger_url, "w-first", False, mailer)
    second, second_tool, second_waiter = worker(tmp_path, ledger_url, "w-second", late, mailer)
    try:
        a = Agent(delivery(first, first_tool, "sync"))
        a.start()
        [approval] = poll(lambda: first.ledger.list_approvals(), what="the approval request")
        b = Agent(delivery(second, second_tool, kind))
        b.start()
        assert second_waiter.waiting.wait(10)  # both deliveries wait on the one approval now
        ledger.decide(approval.approval_id, reviewer="sam", decision="approve", reviewer_roles=frozenset({"support"}))
        if not late:  # one delivery runs the email; the other meets it in flight and waits for its outcome
            assert mailer.sending.wait(10)
            poll(
                lambda: first_waiter.waiting_out.is_set() or second_waiter.waiting_out.is_set(),
                what="the other delivery waiting for the call's outcome",
            )
            mailer.gate.set()
        a.finish(20)
        b.finish(20)
        assert (a.error, b.error) == (None, None)
        assert a.result == b.result == {"message_id": "m-1"}
        assert len(mailer.sent) == 1
        run = first.ledger.get_run("mail:signup-1")
        assert run is not None and run.state == "completed"
    finally:
        mailer.gate.set()
        first.close()
        second.close()
