"""The proxy's streamable HTTP client sessions as the HTTP side sees them: which are in use, and how one ends.

A handshake-era client session over streamable HTTP (one per `Mcp-Session-Id`) holds one of `max_sessions` places
for its upstream session from its first request after the handshake until it ends (`links.py`, `places.py`). A
client that never ends it (no `DELETE`: the TypeScript SDK's clients often leave theirs open) would keep that place
until the SDK's 30-minute idle timeout, and a few such clients would lock every other one out. So when a request
finds every place taken, the session idle the longest, for at least `session_idle` seconds, is ended to give its
place to the newcomer, as the SDK's own idle timeout would end it later (`sdk.end_http_session`): its ID answers
404 from then on (the spec's answer for a terminated session: a conforming client starts a new one), its
connection's teardown closes its upstream session, and the place comes back once that has closed.

A session is in use, never ended, while an HTTP request naming it is in flight (an open GET stream included:
`HttpSessions` counts them, as an ASGI app around the SDK's) or while the proxy serves a request on its upstream
session (`Link.busy`: a `tools/call` is served inside it from before Guard records it `offered` until its outcome
is recorded, so a call in flight is never cut off). Its idle time runs from the last of those to end.
"""

from __future__ import annotations

from collections.abc import Callable

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import ASGIApp, Receive, Scope, Send

from .sdk import end_http_session

__all__ = ["HttpSessions"]

_HEADER = MCP_SESSION_ID_HEADER.lower().encode("ascii")


class HttpSessions:
    """An ASGI app around the proxy's streamable HTTP app (`manager`'s) that counts, per client session, the HTTP
    requests in flight, and ends a session on request.

    Args:
        app: the SDK's streamable HTTP app (`Server.streamable_http_app`).
        manager: its session manager (`Server.session_manager`).
        on_quiet: called with a session's ID when its last HTTP request in flight ended.
    """

    def __init__(self, app: ASGIApp, manager: StreamableHTTPSessionManager, on_quiet: Callable[[str], None]) -> None:
        self.app = app
        self._manager = manager
        self._on_quiet = on_quiet
        self._in_flight: dict[str, int] = {}  # session ID -> HTTP requests in flight (none: not kept)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = _session_id(scope)
        if session_id is None:
            await self.app(scope, receive, send)
            return
        self._in_flight[session_id] = self._in_flight.get(session_id, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self._in_flight[session_id] - 1
            if left:
                self._in_flight[session_id] = left
            else:
                del self._in_flight[session_id]
                self._on_quiet(session_id)

    def busy(self, session_id: str) -> bool:
        """Whether an HTTP request naming `session_id` is in flight (an open GET stream included)."""
        return session_id in self._in_flight

    def end(self, session_id: str) -> bool:
        """End client session `session_id` as the SDK's idle timeout does (404 from now on); False if it is gone.

        Raises:
            SdkChanged: the installed SDK keeps its sessions elsewhere (`sdk.end_http_session`).
        """
        return end_http_session(self._manager, session_id)


def _session_id(scope: Scope) -> str | None:
    if scope["type"] != "http":
        return None
    for name, value in scope["headers"]:
        if name == _HEADER:
            return bytes(value).decode("latin-1")
    return None
