"""The MCP proxy hands Guard's trace context to the upstream in the forwarded request's `_meta` (W3C
`traceparent`): the upstream server's work joins the agent's trace under Guard's span."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
from guard_mcp import GuardProxy, connect, stdio_upstream
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
