"""The bound on the upstream sessions a proxy holds open for its clients (`max_sessions`).

Every upstream session the proxy opens for a client takes a place before it is opened and gives it back only once
it is closed (with a stdio upstream: once its server process has exited), so the upstream never has more than
`max_sessions` of them at once, however many requests arrive: the pooled sessions of 2026-era requests, in use or
idle (`Links.serving`), one per open `subscriptions/listen` stream (`Links.listening`), and one per handshake-era
client connection (each streamable HTTP session, or the stdio client). Outside the bound: the proxy's first
session (`Links.primary`, opened once at start) and the one it opens, once and one at a time, to ask the upstream
its 2026-07-28 capabilities; a compensation's or a reconcile look-up's own connection (`compensate.py`,
`reconcile.py`), opened by a call that already holds a place, runs on a loop of its own and is not counted.

A request that finds every place taken waits up to `session_wait` seconds for one: a pooled session given back
idle is lent at once, an idle one is closed to make room, else a handshake-era streamable HTTP client session idle
for at least `session_idle` seconds is ended (`links.py`, `idle.py`), and a closed one frees its place. When none
came back in time the request is answered with `SessionLimitReached`, a JSON-RPC error that names the limit and what
to do (retry, or raise `--max-sessions`); the proxy goes on serving.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from guard import ConfigurationError

__all__ = ["DEFAULT_MAX_SESSIONS", "DEFAULT_SESSION_IDLE", "DEFAULT_SESSION_WAIT", "Places", "SessionLimitReached"]

DEFAULT_MAX_SESSIONS = 64  # upstream sessions the proxy holds open for its clients at once (stdio: processes)
DEFAULT_SESSION_WAIT = 5.0  # seconds a request waits for a place before it is refused
# Seconds a handshake-era HTTP client session sits idle before a newcomer may take its place.
DEFAULT_SESSION_IDLE = 60.0

T = TypeVar("T")


class SessionLimitReached(MCPError):
    """Every place was taken for `waited` seconds: the request gets this JSON-RPC error (`INTERNAL_ERROR`, with
    `data` = `{"guard/limit": "max_sessions", "max_sessions": N}`); nothing was sent upstream."""

    def __init__(self, limit: int, waited: float) -> None:
        super().__init__(
            INTERNAL_ERROR,
            f"[guard] the proxy is at its limit of {limit} upstream sessions (none came free in {waited:g} s); "
            "retry the request later, or raise the proxy's max_sessions (--max-sessions)",
            {"guard/limit": "max_sessions", "max_sessions": limit},
        )
        self.limit = limit
        self.waited = waited


def _nothing() -> None:
    return None


class Places:
    """How many of `limit` places for upstream sessions are taken.

    A place goes free -> taken (`take`: before its session opens) -> free (`give_back`: after its session closed,
    whether it was closed on purpose, spoiled, cancelled or lost). `moved()` wakes the requests waiting for one:
    a place came free, or a pooled session came back idle.

    Args:
        limit: at most this many places (at least 1).
        wait: seconds `take` waits for a place before it raises `SessionLimitReached`.

    Raises:
        ConfigurationError: a limit below 1 or a negative wait.
    """

    def __init__(self, limit: int, wait: float) -> None:
        if limit < 1:
            raise ConfigurationError(f"guard_mcp: max_sessions must be at least 1, not {limit}")
        if not wait >= 0:
            raise ConfigurationError(f"guard_mcp: session_wait must be a number of seconds >= 0, not {wait}")
        self.limit = limit
        self.wait = wait
        self.taken = 0
        self._moved = anyio.Event()

    async def take(
        self,
        reuse: Callable[[], T | None] = _nothing,
        make_room: Callable[[], float | None] = _nothing,
    ) -> T | None:
        """What `reuse()` finds (an idle session, lent without a new place), else None with a place taken for a new
        session. While none is free it calls `make_room()` (close or end an idle session) and waits for a change, or
        for as many seconds as `make_room()` answered (when a session it may end will have been idle long enough),
        at most `wait` seconds in all.

        Raises:
            SessionLimitReached: no place came free in time.
        """
        with anyio.move_on_after(self.wait):
            while True:
                found = reuse()
                if found is not None:
                    return found
                if self.taken < self.limit:
                    self.taken += 1
                    return None
                again = make_room()
                with anyio.move_on_after(math.inf if again is None else again):
                    await self._moved.wait()
        raise SessionLimitReached(self.limit, self.wait)

    def give_back(self) -> None:
        """A session closed: its place is free."""
        self.taken -= 1
        self.moved()

    def moved(self) -> None:
        """Wake every request waiting for a place (each looks again)."""
        self._moved.set()
        self._moved = anyio.Event()
