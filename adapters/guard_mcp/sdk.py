"""The three places the proxy reaches into private state of the `mcp` SDK, each in one function, checked.

Written against mcp 2.3.0 (`SDK_VERSION`), which offers no public way to do any of them:

- `client_connection(ctx)`: the client `Connection` a lowlevel request came on. The proxy keeps one upstream
  session per client connection in the connection's `state` and closes it with the connection's `exit_stack`.
  The SDK's lowlevel handlers get a `ServerRequestContext` whose `ServerSession` holds the connection as
  `_connection`; only the higher-level `mcp.server.context.Context.connection` is public, and the
  `ServerRunner` does not build that one for lowlevel handlers.
- `send_raw_request(session, method, params)`: a request to the upstream whose result is returned as the
  upstream sent it. Every public request method of `ClientSession` (`send_request`, `list_tools`) validates
  the result against the SDK's own schema of it (a tool without `inputSchema.type` is refused), and the proxy
  must not be stricter than the client behind it; only the session's `_dispatcher` sends a request and hands
  back the raw result.
- `end_http_session(manager, session_id)`: end one streamable HTTP client session as the SDK's own idle timeout
  ends it, early (to give its place to a newcomer, `links.py`). The transport's `idle_scope` is public (the host
  cancels it to end the session), but the manager keeps its transports by session id in `_server_instances` only.

Each function checks what it found and raises `SdkChanged` (naming the SDK version installed and the one
written for) instead of failing somewhere later; `tests/adapters/test_mcp_sdk_internals.py` runs both against
the installed SDK, so an SDK upgrade that moves either fails that test by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import version
from typing import Any, cast

from mcp.client.session import ClientSession
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.dispatcher import CallOptions
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER

from guard import ConfigurationError

__all__ = ["SDK_VERSION", "SdkChanged", "client_connection", "end_http_session", "send_raw_request"]

SDK_VERSION = "2.3.0"  # the `mcp` release these internals were read in


class SdkChanged(ConfigurationError):
    """The installed `mcp` SDK no longer has an internal the proxy relies on: install the `mcp` version
    `guard-middleware[mcp]` pins, or update `guard_mcp/sdk.py` for the new one."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"guard_mcp: the installed mcp SDK ({version('mcp')}) has no {what}; guard_mcp was written against "
            f"mcp {SDK_VERSION} (see guard_mcp/sdk.py)"
        )


def client_connection(ctx: ServerRequestContext[Any]) -> Connection:
    """The client connection a lowlevel request came on (its per-connection state and teardown).

    Raises:
        SdkChanged: the request's `ServerSession` holds no `Connection` where mcp 2.3.0 keeps it.
    """
    connection = getattr(ctx.session, "_connection", None)  # private in mcp 2.3.0: see the module docstring
    if not isinstance(connection, Connection):
        raise SdkChanged("ServerSession._connection (a request's client Connection)")
    return connection


async def send_raw_request(
    session: ClientSession, method: str, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`method` sent on `session` as the session's own requests are (the protocol version header it negotiated),
    its result returned as the upstream sent it, not checked against the SDK's schema of that result.

    Raises:
        MCPError: the upstream answered with an error, or the request timed out or lost its connection.
        SdkChanged: the session has no dispatcher where mcp 2.3.0 keeps it.
    """
    dispatcher = getattr(session, "_dispatcher", None)  # private in mcp 2.3.0: see the module docstring
    send = getattr(dispatcher, "send_raw_request", None)
    if not callable(send):
        raise SdkChanged("ClientSession._dispatcher.send_raw_request (a request sent without result validation)")
    opts: CallOptions = {}
    if session.protocol_version is not None:  # what the SDK's own requests carry over streamable HTTP
        opts["headers"] = {MCP_PROTOCOL_VERSION_HEADER: session.protocol_version}
    raw = await cast(Callable[..., Awaitable[dict[str, Any]]], send)(method, params, opts)
    return raw


def end_http_session(manager: StreamableHTTPSessionManager, session_id: str) -> bool:
    """End the client session `session_id` of `manager` as the SDK's idle timeout does: its transport's idle scope
    is cancelled, so from this moment every request naming it is answered 404 (the spec's answer for a terminated
    session: the client starts a new one), its message loop ends, its connection's teardown runs
    (`Connection.exit_stack`), and the manager forgets it. False: the manager has no such session (any more).

    Raises:
        SdkChanged: the manager keeps no transports by session id where mcp 2.3.0 keeps them, or the session's
            transport has no idle scope to cancel (the manager was built without an idle timeout).
    """
    sessions = getattr(manager, "_server_instances", None)  # private in mcp 2.3.0: see the module docstring
    if not isinstance(sessions, dict):
        raise SdkChanged("StreamableHTTPSessionManager._server_instances (its client sessions by id)")
    transport = cast(dict[str, object], sessions).get(session_id)
    if transport is None:
        return False
    if not isinstance(transport, StreamableHTTPServerTransport) or transport.idle_scope is None:
        raise SdkChanged("StreamableHTTPServerTransport.idle_scope in _server_instances (a session's end)")
    transport.idle_scope.cancel()
    return True
