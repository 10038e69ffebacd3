"""One upstream session per client, and what flows from the upstream back to that client.

Each client connection of the handshake era (the proxy's stdio client, or one streamable HTTP session) gets an
upstream session of its own, opened at its first request after the handshake, with the client's own
capabilities (it offers the upstream sampling, elicitation and roots only when the client does), and closed
with the client's connection. So a client's log level, its resource subscriptions, its progress tokens and the
upstream's requests to it never reach another client.

From the upstream back to the client (`Link`):
- a server-to-client request (`sampling/createMessage`, `elicitation/create`, `roots/list`) is asked of the
  client, on the stream of the client's request being served (the newest one, when several are in flight), or
  on the client's standalone stream when none is; the client's answer (or its error) goes back upstream.
- `notifications/progress` goes to the client request that sent the progress token (the proxy forwards the
  client's `_meta`, token included, unchanged: `meta.forward_meta`); one whose token no request of this client
  sent is dropped.
- a log message rides the client request being served (as it rode the upstream's), else the standalone stream.
- list changes and resource updates go to the client's standalone stream; `notifications/tools/list_changed`
  also tells the proxy (`on_tools_changed`).

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
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from mcp.client.session import ClientRequestContext, ClientSession, IncomingMessage
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from .sdk import client_connection
from .upstream import Upstream, connect

__all__ = ["Link", "Links"]

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)
_STATE_KEY = "guard_mcp/link"
_UNASKED = object()  # the upstream's 2026-07-28 capabilities, before they were asked for


@dataclass(frozen=True, slots=True)
class _Serving:
    """A client request the proxy is serving: where the upstream's messages about it go."""

    session: ServerSession
    request_id: types.RequestId
    progress_token: types.ProgressToken | None


class Link:
    """One upstream session and the client it serves.

    States: opening (`ready` not set) -> open (`session` set) -> closed (`closing` set; the session ends).
    A session that could not be opened leaves `error` set; every request that needed it fails with it.
    """

    def __init__(self, connection: Connection | None, on_tools_changed: Callable[[], None]) -> None:
        self.connection = connection
        self.session: ClientSession | None = None
        self.error: BaseException | None = None
        self.ready = anyio.Event()
        self.closing = anyio.Event()
        self._serving: list[_Serving] = []
        self._on_tools_changed = on_tools_changed
        self.spoiled = False  # a request on it got no answer: its late messages may still come (not lent again)

    def session_options(self, capabilities: types.ClientCapabilities | None) -> dict[str, Any]:
        """The upstream `ClientSession`'s callbacks: the client's own capabilities, offered upstream."""
        options: dict[str, Any] = {"message_handler": self.on_message}
        if capabilities is not None and capabilities.sampling is not None:
            options |= {"sampling_callback": self._sampling, "sampling_capabilities": capabilities.sampling}
        if capabilities is not None and capabilities.elicitation is not None:
            options["elicitation_callback"] = self._elicitation
        if capabilities is not None and capabilities.roots is not None:
            options["list_roots_callback"] = self._list_roots
        return options

    @contextmanager
    def serving(self, ctx: ServerRequestContext[Any]) -> Generator[None]:
        """While the client's request `ctx` is served, the upstream's messages about it go to its stream."""
        if ctx.request_id is None:
            yield
            return
        meta: Mapping[str, Any] = ctx.meta or {}
        token = meta.get("progress_token", meta.get("progressToken"))  # the SDK reads `_meta` by field name
        entry = _Serving(ctx.session, ctx.request_id, token if isinstance(token, str | int) else None)
        self._serving.append(entry)
        try:
            yield
        finally:
            self._serving.remove(entry)

    @contextmanager
    def awaiting_answer(self) -> Generator[None]:
        """Around a request sent upstream on this link: one that gets no answer spoils the link."""
        try:
            yield
        except MCPError as exc:
            if exc.code in (CONNECTION_CLOSED, REQUEST_TIMEOUT):
                self.spoiled = True
            raise
        except BaseException:
            self.spoiled = True
            raise

    async def close(self) -> None:
        self.closing.set()

    # From the upstream to the client.

    async def _sampling(
        self,
        context: ClientRequestContext,  # noqa: ARG002 (the SDK's callback signature)
        params: types.CreateMessageRequestParams,
    ) -> types.CreateMessageResult | types.ErrorData:
        return await self._ask(types.CreateMessageRequest(params=params), types.CreateMessageResult)

    async def _elicitation(
        self,
        context: ClientRequestContext,  # noqa: ARG002 (the SDK's callback signature)
        params: types.ElicitRequestParams,
    ) -> types.ElicitResult | types.ErrorData:
        return await self._ask(types.ElicitRequest(params=params), types.ElicitResult)

    async def _list_roots(
        self,
        context: ClientRequestContext,  # noqa: ARG002 (the SDK's callback signature)
    ) -> types.ListRootsResult | types.ErrorData:
        return await self._ask(types.ListRootsRequest(), types.ListRootsResult)

    async def _ask(self, request: types.ServerRequest, result_type: type[R]) -> R | types.ErrorData:
        """Ask the client `request`; its answer, or its error, for the upstream."""
        current = self._serving[-1] if self._serving else None
        try:
            if current is not None:
                return await current.session.send_request(
                    request, result_type, metadata=ServerMessageMetadata(related_request_id=current.request_id)
                )
            if self.connection is not None:
                data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
                raw = await self.connection.send_raw_request(data["method"], data.get("params"))
                return result_type.model_validate(raw, by_name=False)
        except MCPError as exc:
            return exc.error
        except Exception as exc:  # noqa: BLE001 (the client cannot be asked, gone or closed: the upstream learns why)
            logger.warning("could not ask the client %s: %r", request.method, exc)
            return types.ErrorData(
                code=INTERNAL_ERROR, message=f"the client behind the proxy could not be asked: {type(exc).__name__}"
            )
        return types.ErrorData(code=INVALID_REQUEST, message="no client session behind the proxy to ask")

    async def on_message(self, message: IncomingMessage) -> None:
        """Pass an upstream notification on to this link's client."""
        if isinstance(message, Exception):
            return
        if isinstance(message, types.ToolListChangedNotification):
            self._on_tools_changed()
        if isinstance(message, types.ProgressNotification):
            target = next(
                (
                    s
                    for s in reversed(self._serving)
                    if s.progress_token is not None and s.progress_token == message.params.progress_token
                ),
                None,
            )
            if target is not None:
                await target.session.send_notification(message, related_request_id=target.request_id)
            return
        if isinstance(message, types.LoggingMessageNotification) and self._serving:
            current = self._serving[-1]
            params = message.params
            with warnings.catch_warnings():  # relayed while clients and servers use it
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                # Not `send_notification`: this one keeps a 2026-era request's log-level opt-in.
                await current.session.send_log_message(  # pyright: ignore[reportDeprecated]
                    params.level, params.data, params.logger, related_request_id=current.request_id
                )
            return
        if self.connection is not None:
            data = message.model_dump(by_alias=True, mode="json", exclude_none=True)
            await self.connection.notify(data["method"], data.get("params"))


class Links:
    """The upstream sessions of a proxy: its first one (`primary`: the upstream's identity and capabilities), one
    per handshake-era client connection (opened on the client's first request, closed with it), a pool lent to
    the requests of 2026-era clients one request at a time (`idle` of them waiting), and one 2026-era session per
    open `subscriptions/listen` stream (`listens` of them).

    Args:
        upstream: where to open a client's session; None: every client shares `primary` (a proxy built on a
            session someone else opened).
        primary: the session the proxy was built on.
        on_tools_changed: called when an upstream says its tools changed.
        idle_sessions: how many idle sessions the pool keeps for 2026-era requests.
    """

    def __init__(
        self,
        upstream: Upstream | None,
        primary: ClientSession,
        on_tools_changed: Callable[[], None],
        *,
        idle_sessions: int = 4,
    ) -> None:
        self.upstream = upstream
        self.primary = Link(None, on_tools_changed)
        self.primary.session = primary
        self.primary.ready.set()
        self._on_tools_changed = on_tools_changed
        self._group: anyio.abc.TaskGroup | None = None
        self._idle: list[Link] = []
        self._idle_sessions = idle_sessions
        self.listens = 0  # upstream sessions open for `subscriptions/listen` streams (`listening()`)
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
        client that goes away closes it by cancelling the call. `listens` counts those open.

        Raises:
            MCPError: the proxy opens no sessions of its own (built on someone else's), or the upstream could not
                be reached or does not speak the 2026-07-28 era (its own error, as it answered).
        """
        if self.upstream is None:
            raise MCPError(code=METHOD_NOT_FOUND, message="[guard] this proxy opens no upstream sessions to listen on")
        opened = False
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

    def start(self, group: anyio.abc.TaskGroup) -> None:
        """Open client sessions as tasks of `group` (ended with it)."""
        self._group = group

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

    async def _of(self, connection: Connection) -> Link:
        """The link of a handshake-era client connection (opened on its first request)."""
        if self.upstream is None or self._group is None:
            return self.primary
        link = connection.state.get(_STATE_KEY)
        if not isinstance(link, Link):
            link = Link(connection, self._on_tools_changed)
            connection.state[_STATE_KEY] = link
            connection.exit_stack.push_async_callback(link.close)
            self._group.start_soon(self._hold, link, self.upstream, connection.client_capabilities)
        return await _opened(link)

    async def _lend(self) -> Link:
        """An idle pooled link, or a new one: one 2026-era request's own upstream session while it is served."""
        while self._idle:
            link = self._idle.pop()
            if link.session is not None:
                return link
        assert self.upstream is not None and self._group is not None  # `serving` lends only with both
        link = Link(None, self._on_tools_changed)
        self._group.start_soon(self._hold, link, self.upstream, None)
        return await _opened(link)

    def _give_back(self, link: Link) -> None:
        if link.session is not None and not link.spoiled and len(self._idle) < self._idle_sessions:
            self._idle.append(link)
        else:
            link.closing.set()

    async def _hold(self, link: Link, upstream: Upstream, capabilities: types.ClientCapabilities | None) -> None:
        """Open `link`'s upstream session and keep it open until its client's connection closes."""
        try:
            async with connect(upstream, session_options=link.session_options(capabilities)) as session:
                link.session = session
                link.ready.set()
                await link.closing.wait()
        except Exception as exc:  # noqa: BLE001 (any failure to open it is reported to every request that needed it)
            link.error = exc
            logger.warning("upstream session for a client ended: %r", exc)
        finally:
            link.session = None
            link.ready.set()


async def _opened(link: Link) -> Link:
    await link.ready.wait()
    if link.session is None:
        raise MCPError(code=INTERNAL_ERROR, message=f"[guard] the upstream server could not be reached: {link.error!r}")
    return link
