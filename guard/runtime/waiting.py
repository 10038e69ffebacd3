"""Waiting for a human decision: until the call leaves `awaiting_approval`, the approval expires, or the
agent's own timeout runs out. One API over both backends (`guard.ledger.signals`).

A decision committed in this process (the approval service or a reviewer thread beside the agent) wakes a
blocked agent at once; one made in another process within a few milliseconds: through the ledger's wake file on
SQLite, through this process's LISTEN connection on PostgreSQL. Between wake-ups the agent still reads its one
indexed row at a growing interval (10 ms, x1.5, at most 250 ms; at most 1 s while a LISTEN connection stands):
the safety net for a wake-up that cannot come (an unreachable LISTEN connection, a wake file that cannot be
written).

An agent waits through an outage of the database: a look that cannot reach it counts as "not decided yet", and
the ledger reconnects by itself when the server is back; only when its timeout runs out with the database still
unreachable does the wait raise LedgerUnavailable (nothing ran; the approval stands).

A call that another worker runs (`started`) is waited out by that poll alone: the per-call lifecycle sends no
notification (see `guard.ledger.signals`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

from guard.errors import LedgerUnavailable
from guard.ledger import TICK, CallPathLedger, CallState, Watch, condition
from guard.runtime import tracing

__all__ = ["Waiter"]

_FIRST, _FACTOR, _CAP, _CAP_LISTENING = 0.01, 1.5, 0.25, 1.0


@dataclass(frozen=True, slots=True)
class Waiter:
    """Polls one call's state. `wait` blocks the thread, `await_` yields to the event loop."""

    ledger: CallPathLedger

    def _check(self, call_id: str, approval_id: str, expires_at: float, *, last: bool = True) -> str | None:
        """The call's state once it left `awaiting_approval` (expiring it when due), else None. A database that
        cannot be reached is waited out (`last=False`: looked at again at the next poll, the ledger reconnects
        by itself); at the last look its LedgerUnavailable is raised: nothing is known, nothing ran."""
        try:
            return self._look(call_id, approval_id, expires_at)
        except LedgerUnavailable:
            if last:
                raise
            return None

    def _look(self, call_id: str, approval_id: str, expires_at: float) -> str | None:
        state = self.ledger.call_state(call_id)
        if state != CallState.AWAITING_APPROVAL:
            return state
        if time.time() >= expires_at and self.ledger.expire_if_due(approval_id):
            return CallState.EXPIRED
        return None

    @staticmethod
    def _delays(deadline: float, watch: Watch | None = None) -> Iterator[float]:
        delay = _FIRST
        while (left := deadline - time.monotonic()) > 0:
            yield min(delay, left)
            delay = min(delay * _FACTOR, _CAP_LISTENING if watch is not None and watch.listening else _CAP)

    @tracing.approval_wait
    def wait(self, call_id: str, approval_id: str, expires_at: float, timeout: float) -> str | None:
        """The call's state once decided, or None when `timeout` seconds pass first."""
        watch = self.ledger.wakes.watch()
        for delay in self._delays(time.monotonic() + timeout, watch):
            seen = watch.mark()  # taken before the read: a decision after it cuts the wait short
            if (state := self._check(call_id, approval_id, expires_at, last=False)) is not None:
                return state
            watch.wait(_until_expiry(delay, expires_at), seen)
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

    @tracing.approval_wait
    async def await_(self, call_id: str, approval_id: str, expires_at: float, timeout: float) -> str | None:
        # Opening the LISTEN connection may wait for the server once per process: not on the event loop.
        watch = await asyncio.to_thread(self.ledger.wakes.watch)
        for delay in self._delays(time.monotonic() + timeout, watch):
            if (state := self._check(call_id, approval_id, expires_at, last=False)) is not None:
                return state
            end = time.monotonic() + _until_expiry(delay, expires_at)
            while (left := end - time.monotonic()) > 0:
                await asyncio.sleep(min(TICK, left))
                if watch.moved():
                    break
        return self._check(call_id, approval_id, expires_at)


def _until_expiry(delay: float, expires_at: float) -> float:
    """`delay`, cut short so the poll comes round when the approval expires (plus a little: the database clock
    judges it). Once the expiry has passed by this host's clock, `delay` itself."""
    left = expires_at - time.time()
    return min(delay, left + 0.01) if left > 0 else delay
