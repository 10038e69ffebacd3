"""The MCP proxy hands Guard's trace context to the upstream in the forwarded request's `_meta` (W3C
`traceparent`): the upstream server's work joins the agent's trace under Guard's span."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from guard_mcp import GuardProxy, connect, stdio_upstream
from mcp import Client
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guard import Guard

POLICY = """\
team: tracing
rules:
  - {name: whoami, tools: [whoami], class: read}
"""
# A real MCP server that answers with the trace context it was sent.
UPSTREAM = """
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("trace-echo")


@server.tool()
def whoami(ctx: Context) -> dict:
    meta = ctx.request_context.meta or {}
    return {"traceparent": meta.get("traceparent")}


server.run()
"""


def test_the_upstream_server_sees_the_trace_id_and_span_of_guards_call(tmp_path: Path) -> None:
    """The traceparent the upstream receives names the agent's trace and a span under Guard's execute_tool span."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "tracing.yaml").write_text(POLICY)
    server = tmp_path / "upstream.py"
    server.write_text(UPSTREAM)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    guard = Guard(
        policies=tmp_path / "policies",
        db=f"sqlite:///{tmp_path / 'guard.db'}",
        log_level="error",
        tracer_provider=provider,
    )

    async def scenario() -> Any:
        async with connect(stdio_upstream([sys.executable, str(server)])) as upstream:
            proxy = GuardProxy(guard, upstream, team="tracing")
            with provider.get_tracer("agent").start_as_current_span("invoke_agent crm"):
                async with guard.run("tracing"):
                    return await proxy.guarded("whoami").acall_with({})

    try:
        result = anyio.run(scenario)
    finally:
        guard.close()
        provider.shutdown()
    traceparent = json.loads(result["content"][0]["text"])["traceparent"]
    version, trace_id, parent_id, _flags = traceparent.split("-")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    call, attempt = spans["execute_tool whoami"], spans["guard.attempt"]
    assert call.context is not None and attempt.context is not None and attempt.parent is not None
    assert version == "00" and int(trace_id, 16) == call.context.trace_id
    assert int(trace_id, 16) == spans["invoke_agent crm"].context.trace_id  # pyright: ignore[reportOptionalMemberAccess]
    assert int(parent_id, 16) == attempt.context.span_id and attempt.parent.span_id == call.context.span_id


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_clients_traceparent_is_the_parent_of_guards_span_so_one_trace_runs_client_guard_upstream(
    tmp_path: Path, mode: str
) -> None:
    """A client's W3C `traceparent` in the request's `_meta` (the SDK's client sends its current span) makes
    Guard's `execute_tool` span its child, and the upstream sees the same trace under Guard's attempt."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "tracing.yaml").write_text(POLICY)
    server = tmp_path / "upstream.py"
    server.write_text(UPSTREAM)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    guard = Guard(
        policies=tmp_path / "policies",
        db=f"sqlite:///{tmp_path / 'guard.db'}",
        log_level="error",
        tracer_provider=provider,
    )

    async def scenario() -> Any:
        async with connect(stdio_upstream([sys.executable, str(server)])) as upstream, guard.run("tracing"):
            proxy = GuardProxy(guard, upstream, team="tracing")
            # Served over real streamable HTTP: an in-memory transport would hand the client's contextvars (its
            # current span) to the server's handler, and the test would pass without any `_meta`.
            app = proxy.server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
            listening = socket.socket()
            listening.bind(("127.0.0.1", 0))
            listening.listen()
            web = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
            async with anyio.create_task_group() as group:
                group.start_soon(web.serve, [listening])
                url = f"http://127.0.0.1:{listening.getsockname()[1]}/mcp"
                async with Client(url, mode=mode) as client:  # pyright: ignore[reportArgumentType] - a ConnectMode
                    # Opened after the client connected: the proxy knows of it only through the request's `_meta`.
                    with provider.get_tracer("agent").start_as_current_span("invoke_agent crm"):
                        result = await client.call_tool("whoami", {})
                web.should_exit = True
                return result

    try:
        result = anyio.run(scenario)
    finally:
        guard.close()
        provider.shutdown()
    assert not result.is_error, result
    traceparent = json.loads(result.content[0].text)["traceparent"]  # pyright: ignore[reportAttributeAccessIssue]
    _version, trace_id, parent_id, _flags = traceparent.split("-")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    agent, call, attempt = spans["invoke_agent crm"], spans["execute_tool whoami"], spans["guard.attempt"]
    assert agent.context is not None and call.context is not None and attempt.context is not None
    assert call.parent is not None and call.parent.span_id == agent.context.span_id
    assert call.context.trace_id == agent.context.trace_id == int(trace_id, 16)
    assert int(parent_id, 16) == attempt.context.span_id
