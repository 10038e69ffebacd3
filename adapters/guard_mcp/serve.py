"""Run a `GuardProxy` in one Guard run: upstream over stdio or streamable HTTP, served over stdio or HTTP.

Both sides use the SDK's own transports: `stdio_client` / `streamable_http_client` towards the upstream server,
`stdio_server` / the lowlevel server's `streamable_http_app` (under uvicorn) towards the client. Over HTTP the
proxy serves any number of client sessions, all in its one run, until it is stopped (SIGINT / SIGTERM).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import uvicorn
from mcp.server.stdio import stdio_server

from guard import Guard

from .compensate import declare_compensation
from .proxy import GuardProxy
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


async def serve(guard: Guard, config: ProxyConfig) -> None:
    """Connect upstream, open (or resume) the run, and serve the proxy until the client side ends."""
    async with connect(config.upstream) as session:
        proxy = GuardProxy(guard, session, team=config.team)
        for tool, compensating in config.compensations.items():
            declare_compensation(proxy.guarded(tool), compensating, config.upstream)
        async with guard.run(config.team, run_id=config.run_id, source_event_id=config.source_event_id):
            if config.transport == "http":
                await _serve_http(proxy, config)
            else:
                async with stdio_server() as (read, write):
                    await proxy.server.run(read, write, proxy.server.create_initialization_options())


async def _serve_http(proxy: GuardProxy, config: ProxyConfig) -> None:
    # Started inside the run's scope: the session tasks the app starts inherit the run (a context variable).
    app = proxy.server.streamable_http_app(streamable_http_path=config.path, host=config.host)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                           lifespan="on"))
    await server.serve()
