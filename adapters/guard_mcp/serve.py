"""Run a `GuardProxy` in one Guard run: upstream over stdio or streamable HTTP, served over stdio or HTTP.

Each client connection gets an upstream session of its own (`links.py`); the first one, opened at start, gives
the proxy the upstream's identity and capabilities. Both sides use the SDK's own transports: `stdio_client` /
`streamable_http_client` towards the upstream server, `stdio_server` / the lowlevel server's
`streamable_http_app` (under uvicorn) towards the client. Over HTTP the proxy serves any number of client
sessions, all in its one run, until it is stopped (SIGINT / SIGTERM).

The run and the client's connection (`on_exit`):
- `--event ID` (or `--run-id ID`) names the work, not the connection: the run stays open (`running`) when a
  client disconnects or the proxy stops, so the next connection for the same event carries it on, and every
  call the run already made returns its recorded result. `--on-exit complete` closes it as `completed` when
  the proxy ends cleanly (a one-shot agent whose one session is the whole event); a new call in a completed
  run is refused with what to do (a new `--event`).
- without either, every proxy process is a run of its own, completed when the proxy ends.
- a run that is stopped (halted or pending review) is not entered: the proxy still starts and lists the
  tools, and every `tools/call` answers with a tool error that says what happened and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Literal

import anyio
import uvicorn
from mcp.server.stdio import stdio_server

from guard import Guard, RunNotRunning

from .compensate import declare_compensation
from .places import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE, DEFAULT_SESSION_WAIT
from .proxy import DEFAULT_CALL_TIMEOUT, GuardProxy
from .reconcile import declare_reconcile
from .upstream import Upstream, connect

__all__ = ["ProxyConfig", "serve"]


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """What one proxy serves: the upstream, the run, how clients reach it, and the declared compensations.

    Attributes:
        upstream: the upstream MCP server (a command over stdio, or a streamable HTTP URL).
        team: the team whose policy classifies every call.
        run_id: the run (default `<team>:<source_event_id>`, or a new id).
        source_event_id: the business event the run handles; the same event resumes the same run.
        transport: `stdio` (this process's stdin/stdout) or `http` (streamable HTTP on host:port, path).
        compensations: tool -> upstream tool that compensates it (`{"create_invoice": "void_invoice"}`).
        on_exit: what the proxy's end does to its run: `keep` it running (default with an event or run id) or
            `complete` it (default without: a run of the proxy's own).
        reconciles: tool -> upstream look-up tool that finds its effect by idempotency key (`reconcile.py`).
        call_timeout: seconds an upstream `tools/call` may take; past it the call's outcome is unknown.
        max_sessions: how many upstream sessions the proxy holds open for its clients at once (with a stdio
            upstream, server processes): pooled ones in use or idle, listen streams, handshake-era connections.
        session_wait: seconds a request waits for one of those places before it is refused with an MCP error.
        session_idle: seconds a streamable HTTP client session (handshake era) must have been idle, nothing in
            flight and no open stream, before a request that finds every place taken ends it and takes its place.
    """

    upstream: Upstream
    team: str
    run_id: str | None = None
    source_event_id: str | None = None
    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/mcp"
    compensations: Mapping[str, str] = field(default_factory=dict[str, str])
    on_exit: Literal["keep", "complete"] | None = None
    reconciles: Mapping[str, str] = field(default_factory=dict[str, str])
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT
    max_sessions: int = DEFAULT_MAX_SESSIONS
    session_wait: float = DEFAULT_SESSION_WAIT
    session_idle: float = DEFAULT_SESSION_IDLE

    @property
    def keeps_run_open(self) -> bool:
        if self.on_exit is not None:
            return self.on_exit == "keep"
        return self.run_id is not None or self.source_event_id is not None


async def serve(guard: Guard, config: ProxyConfig) -> None:
    """Connect upstream, open (or resume) the run, and serve the proxy until the client side ends.

    When the clients are gone the run is closed first (`on_exit`), then the upstream sessions: closing a stdio
    upstream waits for its server to exit, and a stdio client gives the proxy only a grace period (two seconds
    in the SDK) after closing its stdin before it kills it, so nothing may stand between the client's going and
    the run's end."""
    async with connect(config.upstream) as session, anyio.create_task_group() as links:
        proxy = GuardProxy(
            guard,
            session,
            team=config.team,
            keeps_run_open=config.keeps_run_open,
            call_timeout=config.call_timeout,
            upstream_spec=config.upstream,
            max_sessions=config.max_sessions,
            session_wait=config.session_wait,
            session_idle=config.session_idle,
        )
        proxy.links.start(links)
        for tool, compensating in config.compensations.items():
            declare_compensation(proxy.guarded(tool), compensating, config.upstream)
        for tool, lookup in config.reconciles.items():
            declare_reconcile(proxy.guarded(tool), lookup, config.upstream)
        async with AsyncExitStack() as run:
            try:
                await run.enter_async_context(
                    guard.run(
                        config.team,
                        run_id=config.run_id,
                        source_event_id=config.source_event_id,
                        keep_open=config.keeps_run_open,
                    )
                )
            except RunNotRunning as err:  # a replay of the event into a stopped run: every call is told why
                guard.log.warning(
                    "the run is stopped; serving tool errors that say so", run_id=err.run_id, state=err.state
                )
                proxy.stopped = err
            if config.transport == "http":
                await _serve_http(proxy, config)
            else:
                async with stdio_server() as (read, write):
                    await proxy.server.run(read, write, proxy.server.create_initialization_options())
        links.cancel_scope.cancel()  # the clients are gone and the run closed: their upstream sessions end


async def _serve_http(proxy: GuardProxy, config: ProxyConfig) -> None:
    # Started inside the run's scope: the session tasks the app starts inherit the run (a context variable).
    # The SDK's own idle timeout (30 minutes) still ends a session nobody needs the place of.
    sdk_app = proxy.server.streamable_http_app(streamable_http_path=config.path, host=config.host)
    app = proxy.links.watch_http(sdk_app, proxy.server.session_manager)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", lifespan="on"))
    await server.serve()
