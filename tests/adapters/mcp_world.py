"""The MCP tests' world: a CRM team policy, the proxy and the CRM server as real processes, and a real client.

Every process a test starts goes through `Processes`, which stops it when the test ends (SIGTERM, then SIGKILL
after a bounded wait). Readiness is polled (`guard.testing.poll`), never slept for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Generator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import mcp_types as types
from guard_mcp import OUTCOME_META_KEY, HttpUpstream, Upstream, connect
from mcp.client.stdio import StdioServerParameters

from guard import Guard
from guard.testing import poll

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"
SERVER = Path(__file__).with_name("mcp_crm_server.py")
PYTHONPATH = os.pathsep.join([str(ADAPTERS), str(ADAPTERS.parent)])

CRM_POLICY = """\
team: crm
description: CRM and billing agent behind the MCP proxy (tests)
reviewers:
  maria: [sales]
rules:
  - name: contacts
    tools: [upsert_contact]
    class: idempotent
  - name: invoices
    tools: [create_invoice]
    class: compensable
    on_failure: compensate
  - name: void-invoices
    tools: [void_invoice]
    class: idempotent
  - name: provisioning
    tools: [provision_account]
    class: compensable
    on_failure: compensate
  - name: documents
    tools: ["resource:crm://docs/*"]
    class: read
  # The server annotates send_quote read-only; the policy says what it is.
  - name: quotes
    tools: [send_quote]
    class: irreversible
    approval: {roles: [sales], expires_after: 1h}
"""

Work = Callable[[Any], Awaitable[Any]]


def write_policy(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "crm.yaml").write_text(CRM_POLICY)
    return folder


def server_env(effects: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": PYTHONPATH, "CRM_EFFECTS": str(effects), **extra}


def proxy_args(policies: Path, db: str, event: str, *extra: str) -> list[str]:
    return [
        "-m",
        "guard_mcp",
        "--policies",
        str(policies),
        "--db",
        db,
        "--team",
        "crm",
        "--event",
        event,
        "--log-level",
        "error",
        *extra,
    ]


def stdio_proxy(
    policies: Path, db: str, effects: Path, event: str, *extra: str, env: dict[str, str] | None = None
) -> StdioServerParameters:
    """The proxy as a stdio server the client starts, itself starting the CRM server over stdio."""
    return StdioServerParameters(
        command=sys.executable,
        args=[*proxy_args(policies, db, event, *extra), "--", sys.executable, str(SERVER)],
        env=env or server_env(effects),
    )


def session(upstream: Upstream, work: Work) -> Any:
    """Run `work(session)` in a real MCP client session to `upstream` (the proxy, or the server itself)."""

    async def main() -> Any:
        with open(os.devnull, "w") as quiet:
            async with connect(upstream, errlog=quiet) as client:
                return await work(client)

    return anyio.run(main)


def call(upstream: Upstream, tool: str, args: dict[str, Any], **meta: str) -> types.CallToolResult:
    """One call in a session of its own (a client that connects, calls and goes away)."""

    async def work(client: Any) -> types.CallToolResult:
        return await client.call_tool(tool, args, meta=meta or None)

    return session(upstream, work)


def effects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def outcome(result: types.CallToolResult) -> dict[str, Any]:
    """The typed outcome the proxy put in `_meta["guard/outcome"]` of an error result (Guard's own error results
    have no `structuredContent`: it belongs to the tool's output schema)."""
    assert result.is_error, text(result)
    assert result.meta is not None
    return result.meta[OUTCOME_META_KEY]


def ledger_calls(policies: Path, db: str, run_id: str) -> list[tuple[str, str]]:
    with Guard(policies=policies, db=db, log_level="error") as guard:
        return [(c.tool, c.state) for c in guard.ledger.calls_of(run_id)]


def guard_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Guard's own command line, as a reviewer or operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "guard", *args], capture_output=True, text=True, timeout=60, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Processes:
    """Starts background processes for one test and stops every one of them at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, *args], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._procs.append((proc, log))
        return proc

    def start_http(self, name: str, args: Sequence[str], env: dict[str, str], port: int) -> HttpUpstream:
        """Start a process that serves streamable HTTP on `port`; return its endpoint once it listens."""
        proc = self.start(name, args, env)

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited ({proc.returncode}): {self.log_of(name)}")
            return _listening(port)

        poll(up, timeout=30, what=f"{name} listening on port {port}", interval=0.05)
        return HttpUpstream(f"http://127.0.0.1:{port}/mcp")

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        return proc.returncode

    def close(self) -> None:
        for proc, log in reversed(self._procs):
            self.stop(proc)
            log.close()
        self._procs.clear()


@contextmanager
def processes(logs: Path) -> Generator[Processes]:
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.close()
