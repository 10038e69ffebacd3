"""Waiting for a human decision: until the call leaves `awaiting_approval`, the approval expires, or the
agent's own timeout runs out.

A decision committed in this process (the approval service or a reviewer thread beside the agent) wakes a
blocked agent at once; one made in another process on the same SQLite file within a few milliseconds, through
the ledger's wake file (`guard.ledger.signals`). Between wake-ups the agent still reads its one indexed row at
a growing interval (10 ms, x1.5, at most 250 ms): the safety net, and the seam a PostgreSQL backend fills with
LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

from guard.ledger import TICK, CallState, Ledger, Watch, condition

__all__ = ["Waiter"]

_FIRST, _FACTOR, _CAP = 0.01, 1.5, 0.25


@dataclass(frozen=True, slots=True)
class Waiter:
    """Polls one call's state. `wait` blocks the thread, `await_` yields to the event loop."""

    ledger: Ledger

    def _check(self, call_id: str, approval_id: str, expires_at: float) -> str | None:
        state = self.ledger.call_state(call_id)
        if state != CallState.AWAITING_APPROVAL:
            return state
        if time.time() >= expires_at and self.ledger.expire_if_due(approval_id):
            return CallState.EXPIRED
        return None

    @staticmethod
    def _delays(deadline: float) -> Iterator[float]:
        delay = _FIRST
        while (left := deadline - time.monotonic()) > 0:
            yield min(delay, left)
            delay = min(delay * _FACTOR, _CAP)

    def wait(self, call_id: str, approval_id: str, expires_at: float, timeout: float) -> str | None:
        """The call's state once decided, or None when `timeout` seconds pass first."""
        decided = condition(self.ledger.url)
        watch = Watch(self.ledger.url)
        for delay in self._delays(time.monotonic() + timeout):
            with decided:  # held from the check to the wait: a decision in between cannot go unnoticed
                if (state := self._check(call_id, approval_id, expires_at)) is not None:
                    return state
                watch.wait(decided, delay)
        return self._check(call_id, approval_id, expires_at)

    def wait_out(self, call_id: str, timeout: float) -> str | None:
        """While another worker runs the call (`started`): its state once it leaves `started`, or None when
        `timeout` seconds pass first."""
        decided = condition(self.ledger.url)
        for delay in self._delays(time.monotonic() + timeout):
            if (state := self.ledger.call_state(call_id)) != CallState.STARTED:
                return state
            with decided:
                decided.wait(delay)
        return None

    async def await_out(self, call_id: str, timeout: float) -> str | None:
        for delay in self._delays(time.monotonic() + timeout):
            if (state := self.ledger.call_state(call_id)) != CallState.STARTED:
                return state
            await asyncio.sleep(delay)
        return None

    async def await_(self, call_id: str, approval_id: str, expires_at: float, timeout: float) -> str | None:
        watch = Watch(self.ledger.url)
        for delay in self._delays(time.monotonic() + timeout):
            if (state := self._check(call_id, approval_id, expires_at)) is not None:
                return state
            end = time.monotonic() + delay
            while (left := end - time.monotonic()) > 0:
                await asyncio.sleep(min(TICK, left) if watch.active else left)
                if watch.moved():
                    break
        return self._check(call_id, approval_id, expires_at)
