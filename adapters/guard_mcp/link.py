"""One upstream session and the client it serves (`Link`; `links.py` opens, lends and bounds them).

From the upstream back to the client:
- a server-to-client request (`sampling/createMessage`, `elicitation/create`, `roots/list`) is asked of the
  client, on the stream of the client's request being served (the newest one, when several are in flight), or
  on the client's standalone stream when none is; the client's answer (or its error) goes back upstream.
- `notifications/progress` goes to the client request that sent the progress token (the proxy forwards the
  client's `_meta`, token included, unchanged: `meta.forward_meta`); one whose token no request of this client
  sent is dropped.
- a log message rides the client request being served (as it rode the upstream's), else the standalone stream.
- list changes and resource updates go to the client's standalone stream; `notifications/tools/list_changed`
  also tells the proxy (`on_tools_changed`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.client.session import ClientRequestContext, ClientSession, IncomingMessage
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_REQUEST, REQUEST_TIMEOUT
from pydantic import BaseModel

__all__ = ["Link"]

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)


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
        self.last_active = 0.0  # when it opened, or last ended serving a request (the proxy's clock)

    @property
    def busy(self) -> bool:
        """Whether a client request is being served on it (`serving`)."""
        return bool(self._serving)

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
