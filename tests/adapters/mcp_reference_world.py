"""The reference server's world: a policy that lets every tool and resource through as a `read`, the server and
the proxy in front of it as real processes (stdio or streamable HTTP, either side), and a real SDK client that
answers the server's requests and records every notification it gets.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from guard_mcp import HttpUpstream, Upstream, connect
from mcp.client.session import ClientRequestContext, ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_world import PYTHONPATH, Processes, free_port

REFERENCE = Path(__file__).with_name("mcp_reference_server.py")

OPEN_POLICY = """\
team: ref
description: the reference server behind the proxy, every tool and resource a read (tests)
rules:
  - name: everything
    tools: ["*"]
    class: read
"""


def write_open_policy(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "ref.yaml").write_text(OPEN_POLICY)
    return folder


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": PYTHONPATH, **extra}


def reference_stdio(**extra: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(REFERENCE)], env=env(**extra))


def proxy_args(policies: Path, db: Path, event: str, *extra: str) -> list[str]:
    return [
        "-m",
        "guard_mcp",
        "--policies",
        str(policies),
        "--db",
        f"sqlite:///{db}",
        "--team",
        "ref",
        "--event",
        event,
        "--log-level",
        "error",
        *extra,
    ]


def stdio_proxy(policies: Path, db: Path, event: str, **extra: str) -> StdioServerParameters:
    """The proxy as a stdio server the client starts, itself starting the reference server over stdio."""
    return StdioServerParameters(
        command=sys.executable,
        args=[*proxy_args(policies, db, event), "--", sys.executable, str(REFERENCE)],
        env=env(**extra),
    )


def http_reference(procs: Processes) -> HttpUpstream:
    port = free_port()
    return procs.start_http("reference", [str(REFERENCE), "--http", str(port)], env(), port)


def http_proxy(
    procs: Processes, policies: Path, db: Path, event: str, upstream: str, *extra: str, **environ: str
) -> HttpUpstream:
    """The proxy over streamable HTTP with the options `extra`, in front of the reference server (`upstream`:
    "stdio", or its URL), with `environ` added to the environment (a stdio upstream's too)."""
    port = free_port()
    tail = ["--", sys.executable, str(REFERENCE)] if upstream == "stdio" else ["--upstream-url", upstream]
    args = proxy_args(policies, db, event, "--serve", "http", "--port", str(port), *extra)
    return procs.start_http("proxy", [*args, *tail], env(**environ), port)


@dataclass
class Agent:
    """A client that answers the server's requests as `name` and records what the server told it."""

    name: str = "agent"
    roots: list[str] = field(default_factory=lambda: ["file:///work/agent"])
    notifications: list[types.ServerNotification] = field(default_factory=list[types.ServerNotification])
    asked: list[str] = field(default_factory=list[str])

    def options(self) -> dict[str, Any]:
        return {
            "sampling_callback": self._sample,
            "elicitation_callback": self._elicit,
            "list_roots_callback": self._roots,
            "message_handler": self._heard,
        }

    async def _sample(
        self,
        ctx: ClientRequestContext,
        params: types.CreateMessageRequestParams,
    ) -> types.CreateMessageResult:
        self.asked.append("sampling/createMessage")
        return types.CreateMessageResult.model_validate(
            {
                "role": "assistant",
                "content": {"type": "text", "text": f"{self.name} says hello"},
                "model": "test",
                "stopReason": "endTurn",
            }
        )

    async def _elicit(self, ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append("elicitation/create")
        return types.ElicitResult.model_validate(
            {"action": "accept", "content": {"username": self.name, "email": "a@b.c"}}
        )

    async def _roots(self, ctx: ClientRequestContext) -> types.ListRootsResult:
        self.asked.append("roots/list")
        return types.ListRootsResult.model_validate({"roots": [{"uri": uri} for uri in self.roots]})

    async def _heard(self, message: IncomingMessage) -> None:
        if not isinstance(message, Exception):
            self.notifications.append(message)

    def heard(self, kind: type[Any]) -> list[Any]:
        return [n for n in self.notifications if isinstance(n, kind)]


Work = Callable[[ClientSession], Awaitable[Any]]


async def as_agent(upstream: Upstream, agent: Agent, work: Work) -> Any:
    """Run `work(session)` in a real SDK client session to `upstream`, answering and recording as `agent`."""
    with open(os.devnull, "w") as quiet:
        async with connect(upstream, errlog=quiet, session_options=agent.options()) as client:
            return await work(client)


def run(upstream: Upstream, agent: Agent, work: Work) -> Any:
    return anyio.run(as_agent, upstream, agent, work)


async def set_level(client: ClientSession, level: types.LoggingLevel) -> None:
    """`logging/setLevel`, deprecated in the 2026 era and still what handshake-era servers filter by."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.set_logging_level(level)  # pyright: ignore[reportDeprecated] - the handshake-era log level


async def subscribe(client: ClientSession, uri: str) -> None:
    """`resources/subscribe`, removed in the 2026 era and still how a handshake-era client watches a resource."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.subscribe_resource(uri)  # pyright: ignore[reportDeprecated] - the handshake-era subscription
