"""The world of the proxy's session bound (`--max-sessions`, `guard_mcp/places.py`), seen from the upstream's side:
the reference server over stdio (one process per session) notes each process it starts and ends in a file
(`REFERENCE_SESSIONS`), so the tests count the upstream's own sessions, not the proxy's counter. The proxy runs as
`python -m guard_mcp --serve http`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import httpx2
import mcp_types as types
from guard_mcp import HttpUpstream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_reference_world import REFERENCE, env, proxy_args, write_open_policy
from mcp_world import Processes, free_port

from guard.testing import poll

SIMPLE = "This is a simple text response for testing."


class UpstreamSessions:
    """The reference server's own record of its processes: `+PID` when one starts, `-PID` when it is done."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def _marks(self) -> list[str]:
        text = self.log.read_text() if self.log.exists() else ""
        return [line for line in text.split("\n") if line[:1] in "+-" and line[1:].isdigit()]

    def live(self) -> int:
        """Sessions open now, but for the proxy's first one (opened at start, outside the bound)."""
        return self.peak_and_live()[1]

    def peak(self) -> int:
        """The most sessions that were ever open at once, but for the proxy's first one."""
        return self.peak_and_live()[0]

    def peak_and_live(self) -> tuple[int, int]:
        marks = self._marks()
        first = marks[0][1:] if marks else None
        open_now: set[str] = set()
        peak = 0
        for mark in marks:
            if mark[1:] == first:
                continue
            if mark[0] == "+":
                open_now.add(mark[1:])
            else:
                open_now.discard(mark[1:])
            peak = max(peak, len(open_now))
        return peak, len(open_now)


def limited_proxy(
    procs: Processes, tmp_path: Path, event: str, *extra: str
) -> tuple[HttpUpstream, UpstreamSessions, Path]:
    """The proxy over streamable HTTP with `extra` options, the reference server behind it over stdio: its endpoint,
    the upstream's record of its sessions, and the gate file that releases `test_hold`."""
    policies = write_open_policy(tmp_path / "policies")
    sessions, gate = tmp_path / "sessions.log", tmp_path / "gate"
    port = free_port()
    args = proxy_args(policies, tmp_path / "guard.db", event, "--serve", "http", "--port", str(port), *extra)
    proxy = procs.start_http(
        "proxy",
        [*args, "--", sys.executable, str(REFERENCE)],
        env(REFERENCE_SESSIONS=str(sessions), REFERENCE_GATE=str(gate)),
        port,
    )
    return proxy, UpstreamSessions(sessions), gate


async def until(what: str, holds: Callable[[], bool]) -> None:
    await anyio.to_thread.run_sync(lambda: poll(holds, timeout=30, what=what, interval=0.02))


def texts(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def assert_limit_error(exc: MCPError, limit: int) -> None:
    assert exc.code == types.INTERNAL_ERROR
    assert f"at its limit of {limit} upstream sessions" in exc.message and "--max-sessions" in exc.message
    assert exc.data == {"guard/limit": "max_sessions", "max_sessions": limit}


@dataclass
class Noted:
    """What an abandoning client sent with its requests: its session ID and protocol version."""

    session_id: str | None = None
    protocol_version: str | None = None


@asynccontextmanager
async def abandoning(proxy: HttpUpstream, noted: Noted) -> AsyncGenerator[Client]:
    """A real SDK client of the handshake era over streamable HTTP that never ends its session (no `DELETE` when it
    goes, as the TypeScript SDK's clients often leave theirs), noting the session ID and version it sent."""

    async def note(request: httpx2.Request) -> None:
        if session_id := request.headers.get("mcp-session-id"):
            noted.session_id = session_id
            noted.protocol_version = request.headers.get("mcp-protocol-version")

    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300), event_hooks={"request": [note]}) as http:
        transport = streamable_http_client(proxy.url, http_client=http, terminate_on_close=False)
        async with Client(transport, mode="legacy") as client:
            yield client


async def next_request_status(proxy: HttpUpstream, noted: Noted) -> int:
    """The HTTP status the proxy answers a `tools/list` with, sent in the abandoned session `noted` (its client's
    next request, on the wire)."""
    assert noted.session_id is not None and noted.protocol_version is not None
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-session-id": noted.session_id,
        "mcp-protocol-version": noted.protocol_version,
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(proxy.url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        return response.status_code


class RawSession:
    """A handshake-era client session spoken over plain HTTP: what a client that crashes mid-request leaves behind."""

    def __init__(self, proxy: HttpUpstream, http: httpx2.AsyncClient) -> None:
        self.proxy = proxy
        self.http = http
        self.noted = Noted()

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if self.noted.session_id is not None and self.noted.protocol_version is not None:
            headers |= {"mcp-session-id": self.noted.session_id, "mcp-protocol-version": self.noted.protocol_version}
        return headers

    async def open(self) -> None:
        """`initialize` and `notifications/initialized`: the session is open."""
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
        response = await self.http.post(self.proxy.url, headers=self._headers(), json=body)
        assert response.status_code == 200, response.text
        self.noted.session_id = response.headers["mcp-session-id"]
        self.noted.protocol_version = "2025-11-25"
        body = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response = await self.http.post(self.proxy.url, headers=self._headers(), json=body)
        assert response.status_code == 202, response.text

    async def call_and_hang_up(self, tool: str) -> None:
        """Send `tools/call` of `tool` with a progress token, read its stream until the first progress notification
        (the tool runs), then close the connection without a word, as a crashed client does."""
        params = {"name": tool, "arguments": {}, "_meta": {"progressToken": "p"}}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        async with self.http.stream("POST", self.proxy.url, headers=self._headers(), json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if "notifications/progress" in line:
                    return
        raise AssertionError("the call's stream ended before the tool reported it runs")
