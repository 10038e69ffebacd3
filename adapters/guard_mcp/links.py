"""One upstream session per client, the pool of 2026-era sessions, and the bound on them all.

Each client connection of the handshake era (the proxy's stdio client, or one streamable HTTP session) gets an
upstream session of its own, opened at its first request after the handshake, with the client's own
capabilities (it offers the upstream sampling, elicitation and roots only when the client does), and closed
with the client's connection. So a client's log level, its resource subscriptions, its progress tokens and the
upstream's requests to it never reach another client.

How each such session talks back to its client: `link.py`.

A client of the 2026-07-28 era has no session (every request carries its own envelope, and the server may not
ask the client anything), so each of its requests borrows an upstream session of its own for as long as it is
served (`Links.serving`), from a pool of idle ones (a new one is opened when none is idle), and gives it back
when it ends. One request at a time per upstream session, so what the upstream sends while serving it (progress,
log messages, requests) is about that request alone and goes to its client alone: log messages only as far as
the request opted in (`io.modelcontextprotocol/logLevel`, the SDK's `send_log_message` gate); a server request
is refused (the 2026 era forbids them), never asked of another client. The upstream answers a request after its
progress and log messages, so the next borrower gets none of them; a request that got no answer (timed out,
cancelled, its connection lost) may still have some coming, and its session is closed, not lent again
(`Link.awaiting_answer`). These sessions offer the upstream no sampling, elicitation or roots, and nobody sets
their log level (`logging/setLevel` is gone in the 2026 era), so no state of one request reaches the next.
A pooled session's list changes and resource updates reach no client: in the 2026 era those travel only on a
`subscriptions/listen` stream, and each such stream has an upstream session of its own, in that era, outside the
pool (`Links.listening`, `listen.py`).

Every session opened for a client (pooled, in use or idle; a listen's; a handshake-era connection's) takes one of
`max_sessions` places before it opens and gives it back once it closed (`places.py`): a flood of requests waits a
short while for a place, then gets a JSON-RPC error naming the limit, and never opens more sessions (with a stdio
upstream, more processes) than that. A request that finds every place taken makes room: an idle pooled session is
closed, else the handshake-era streamable HTTP client session idle the longest (for at least `session_idle`
seconds, nothing in flight) is ended as the SDK's idle timeout ends it (`idle.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
import structlog
from mcp.client.session import ClientSession
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp
from structlog.typing import FilteringBoundLogger

from guard import ConfigurationError

from .idle import HttpSessions
from .link import Link
from .places import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE, DEFAULT_SESSION_WAIT, Places, SessionLimitReached
from .sdk import client_connection
from .upstream import Upstream, connect

__all__ = ["Link", "Links"]

logger = logging.getLogger(__name__)

_STATE_KEY = "guard_mcp/link"
_UNASKED = object()  # the upstream's 2026-07-28 capabilities, before they were asked for


class Links:
    """The upstream sessions of a proxy: its first one (`primary`: the upstream's identity and capabilities), one
    per handshake-era client connection (opened on the client's first request, closed with it), a pool lent to
    the requests of 2026-era clients one request at a time (`idle` of them waiting), and one 2026-era session per
    open `subscriptions/listen` stream (`listens` of them). All but `primary` hold a place of `places` (at most
    `max_sessions`) from before they open until they have closed.

    Args:
        upstream: where to open a client's session; None: every client shares `primary` (a proxy built on a
            session someone else opened).
        primary: the session the proxy was built on.
        on_tools_changed: called when an upstream says its tools changed.
        idle_sessions: how many idle sessions the pool keeps for 2026-era requests.
        max_sessions: how many upstream sessions it holds open for clients at once, all kinds together (`places.py`).
        session_wait: seconds a request waits for one of those places before `SessionLimitReached` answers it.
        session_idle: seconds a handshake-era streamable HTTP client session must have been idle before a request
            that finds every place taken ends it to take its place (`idle.py`; only once `watch_http` watches the
            proxy's HTTP app).
        log: where an ended session is logged (structlog; default: structlog's own logger).
        clock: the time in seconds (default: the event loop's).

    Raises:
        ConfigurationError: `max_sessions` below 1, a negative `session_wait`, or a `session_idle` not above 0.
    """

    def __init__(
        self,
        upstream: Upstream | None,
        primary: ClientSession,
        on_tools_changed: Callable[[], None],
        *,
        idle_sessions: int = 4,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        session_wait: float = DEFAULT_SESSION_WAIT,
        session_idle: float = DEFAULT_SESSION_IDLE,
        log: FilteringBoundLogger | None = None,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        if not session_idle > 0:
            raise ConfigurationError(f"guard_mcp: session_idle must be a number of seconds > 0, not {session_idle}")
        self.upstream = upstream
        self.primary = Link(None, on_tools_changed)
        self.primary.session = primary
        self.primary.ready.set()
        self._on_tools_changed = on_tools_changed
        self._group: anyio.abc.TaskGroup | None = None
        self._idle: list[Link] = []
        self._idle_sessions = idle_sessions
        self.places = Places(max_sessions, session_wait)
        self.listens = 0  # upstream sessions open for `subscriptions/listen` streams (`listening()`)
        self.session_idle = session_idle
        self.ended = 0  # idle HTTP client sessions ended to make room
        self._log: FilteringBoundLogger = log if log is not None else structlog.get_logger("guard_mcp")
        self._clock = clock
        self._http: HttpSessions | None = None
        self._held: dict[str, Link] = {}  # HTTP session ID -> its open handshake-era link (holding a place)
        self._ending: Link | None = None  # the session ended to make room, until its place is back
        self._returning = 0  # sessions closing, their places not back yet
        self._discovering = anyio.Lock()
        self._discovered: types.ServerCapabilities | object | None = _UNASKED

    @property
    def idle(self) -> int:
        """How many upstream sessions wait in the pool for the next 2026-era request."""
        return len(self._idle)

    async def modern_capabilities(self) -> types.ServerCapabilities | None:
        """The upstream's capabilities in the 2026-07-28 era, as its own `server/discover` answers them (asked once,
        on a session of its own closed at once); None when the upstream does not speak that era (its discover
        failed) or the proxy opens no sessions of its own. Not kept when the upstream could not be reached."""
        if self.upstream is None:
            return None
        async with self._discovering:
            if self._discovered is _UNASKED:
                try:
                    async with connect(self.upstream, era="modern") as session:
                        self._discovered = session.server_capabilities
                except MCPError as exc:
                    logger.info("the upstream does not speak the 2026-07-28 era: %r", exc)
                    self._discovered = None
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream) as exc:
                    logger.warning("could not ask the upstream its 2026-07-28 capabilities: %r", exc)
                    return None
        return self._discovered if isinstance(self._discovered, types.ServerCapabilities) else None

    @asynccontextmanager
    async def listening(self) -> AsyncGenerator[ClientSession]:
        """A 2026-era upstream session of its own for one `subscriptions/listen` stream (`listen.py`), opened and
        closed in the caller's task: never from the pool nor back into it (its stream outlives any request), so a
        client that goes away closes it by cancelling the call. `listens` counts those open; each holds a place
        (`places`), taken before it opens (an idle pooled session is closed to make room) and given back once closed.

        Raises:
            SessionLimitReached: no place came free in time.
            MCPError: the proxy opens no sessions of its own (built on someone else's), or the upstream could not
                be reached or does not speak the 2026-07-28 era (its own error, as it answered).
        """
        if self.upstream is None:
            raise MCPError(code=METHOD_NOT_FOUND, message="[guard] this proxy opens no upstream sessions to listen on")
        opened = False
        await self.places.take(make_room=self._make_room)
        self.listens += 1
        try:
            async with connect(self.upstream, era="modern") as session:
                opened = True
                yield session
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream) as exc:
            if opened:
                raise
            raise MCPError(
                code=INTERNAL_ERROR, message=f"[guard] the upstream server could not be reached: {exc!r}"
            ) from exc
        finally:
            self.listens -= 1
            self.places.give_back()

    def start(self, group: anyio.abc.TaskGroup) -> None:
        """Open client sessions as tasks of `group` (ended with it)."""
        self._group = group

    def watch_http(self, app: ASGIApp, manager: StreamableHTTPSessionManager) -> ASGIApp:
        """`app` (the proxy's streamable HTTP app, `manager`'s) as an app that counts each client session's HTTP
        requests in flight, so a request at the bound may end a session idle for `session_idle` seconds."""
        self._http = HttpSessions(app, manager, self._quiet)
        return self._http

    @asynccontextmanager
    async def serving(self, ctx: ServerRequestContext[Any]) -> AsyncGenerator[Link]:
        """The link that serves request `ctx`, open, with the upstream's messages about it going to its client."""
        connection = client_connection(ctx)
        lent = (
            self.upstream is not None
            and self._group is not None
            and connection.protocol_version in MODERN_PROTOCOL_VERSIONS
        )
        link = await (self._lend() if lent else self._of(connection))
        try:
            with link.serving(ctx):
                yield link
        finally:
            if lent:
                self._give_back(link)
            else:
                self._quiet_link(link)

    async def _of(self, connection: Connection) -> Link:
        """The link of a handshake-era client connection (opened on its first request)."""
        if self.upstream is None or self._group is None:
            return self.primary
        link = connection.state.get(_STATE_KEY)
        if not isinstance(link, Link) or isinstance(link.error, SessionLimitReached):  # refused a place: ask again
            link = Link(connection, self._on_tools_changed)
            connection.state[_STATE_KEY] = link
            connection.exit_stack.push_async_callback(link.close)
            self._group.start_soon(self._hold, link, self.upstream, connection.client_capabilities)
        return await _opened(link)

    async def _lend(self) -> Link:
        """An idle pooled link, or a new one in a free place: one 2026-era request's own upstream session while it
        is served. A request cancelled while its new session opens closes it (its place comes back).

        Raises:
            SessionLimitReached: no idle link and no free place came in time.
        """
        reused = await self.places.take(reuse=self._idle_link, make_room=self._make_room)
        if reused is not None:
            return reused
        assert self.upstream is not None and self._group is not None  # `serving` lends only with both
        link = Link(None, self._on_tools_changed)
        self._group.start_soon(self._hold, link, self.upstream, None, True)
        try:
            return await _opened(link)
        except BaseException:
            link.closing.set()
            raise

    def _idle_link(self) -> Link | None:
        while self._idle:
            link = self._idle.pop()
            if link.session is not None:  # else its session ended while idle (its place is back already)
                return link
        return None

    def _make_room(self) -> float | None:
        """Make room for a request that found every place taken: the longest idle pooled session closes, else the
        longest idle handshake-era HTTP client session is ended (`_end_an_idle`); its place comes back once it has
        closed. The seconds until a session will have been idle long enough to end (look again then), else None."""
        if self._idle:
            self._idle.pop(0).closing.set()
            return None
        return self._end_an_idle()

    def _end_an_idle(self) -> float | None:
        """End the HTTP client session idle the longest, if for at least `session_idle` seconds: one at a time, never
        one with an HTTP request in flight (an open GET stream included) or a request being served upstream."""
        http = self._http
        if http is None or self._ending is not None or self._returning:  # a place comes back soon (`moved`)
            return None
        if any(link.closing.is_set() for link in self._held.values()):  # one closing: its `_hold` not woken yet
            return None
        quiet = [(link.last_active, sid, link) for sid, link in self._held.items() if not link.busy]
        quiet = [entry for entry in quiet if not http.busy(entry[1])]
        if not quiet:
            return None
        since, sid, link = min(quiet, key=lambda entry: entry[0])
        idle = self._clock() - since
        if idle < self.session_idle:
            return self.session_idle - idle
        self._ending = link
        self.ended += 1
        self._log.warning(
            "ended an idle client session to make room for a new one: its client's next request is answered 404 "
            "and starts a new session",
            idle_seconds=round(idle, 3),
            session_idle=self.session_idle,
            max_sessions=self.places.limit,
            ended_so_far=self.ended,
        )
        link.closing.set()  # its upstream session closes at once, whatever the SDK's teardown takes
        http.end(sid)  # 404 from now on; the connection's teardown (`Link.close`) follows
        return None

    def _quiet(self, session_id: str) -> None:
        """The last HTTP request naming `session_id` ended: its idle time starts now."""
        link = self._held.get(session_id)
        if link is not None:
            self._quiet_link(link)

    def _quiet_link(self, link: Link) -> None:
        link.last_active = self._clock()
        if not link.busy:
            self.places.moved()  # a request waiting for a place looks again (when this one may be ended)

    def _give_back(self, link: Link) -> None:
        if link.session is not None and not link.spoiled and len(self._idle) < self._idle_sessions:
            self._idle.append(link)
            self.places.moved()
        else:
            link.closing.set()

    async def _hold(
        self,
        link: Link,
        upstream: Upstream,
        capabilities: types.ClientCapabilities | None,
        placed: bool = False,
    ) -> None:
        """Open `link`'s upstream session in a place of its own (taken here unless `placed`) and keep it open until
        its client's connection closes (or, lent, until it is not given back to the pool); then free the place."""
        if not placed:
            try:
                await self.places.take(make_room=self._make_room)
            except BaseException as exc:  # refused a place (or the proxy stopping): every request waiting is told
                link.error = exc
                link.ready.set()
                if isinstance(exc, SessionLimitReached):
                    return
                raise
        session_id = link.connection.session_id if link.connection is not None else None
        returning = False
        try:
            async with connect(upstream, session_options=link.session_options(capabilities)) as session:
                link.session = session
                link.last_active = self._clock()
                if session_id is not None:
                    self._held[session_id] = link
                link.ready.set()
                await link.closing.wait()
                returning = True
                self._returning += 1
        except Exception as exc:  # noqa: BLE001 (any failure to open it is reported to every request that needed it)
            link.error = exc
            logger.warning("upstream session for a client ended: %r", exc)
        finally:
            link.session = None
            link.ready.set()
            if session_id is not None and self._held.get(session_id) is link:
                del self._held[session_id]
            if self._ending is link:
                self._ending = None
            if returning:
                self._returning -= 1
            self.places.give_back()


async def _opened(link: Link) -> Link:
    await link.ready.wait()
    if isinstance(link.error, SessionLimitReached):
        raise SessionLimitReached(link.error.limit, link.error.waited)
    if link.session is None:
        raise MCPError(code=INTERNAL_ERROR, message=f"[guard] the upstream server could not be reached: {link.error!r}")
    return link
