"""Waiting for a human decision: poll the ledger with a growing interval until the call leaves
`awaiting_approval`, the approval expires, or the agent's own timeout runs out.

This is the seam a PostgreSQL backend fills with LISTEN/NOTIFY; on SQLite a bounded poll of one indexed
row is the cheapest honest wake-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

from guard.ledger import CallState, Ledger

__all__ = ["Waiter"]

_FIRST, _FACTOR, _CAP = 0.01, 1.5, 0.5


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
        for delay in self._delays(time.monotonic() + timeout):
            if (state := self._check(call_id, approval_id, expires_at)) is not None:
                return state
            time.sleep(delay)
        return self._check(call_id, approval_id, expires_at)

    async def await_(self, call_id: str, approval_id: str, expires_at: float, timeout: float) -> str | None:
        for delay in self._delays(time.monotonic() + timeout):
            if (state := self._check(call_id, approval_id, expires_at)) is not None:
                return state
            await asyncio.sleep(delay)
        return self._check(call_id, approval_id, expires_at)
