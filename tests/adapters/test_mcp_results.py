"""What the proxy forwards and records of a tool call is what the client sent and the upstream answered: a call
without `arguments` reaches the upstream without them, and a `read` tool that answered with an error result ran
once (retries of a repeat-safe class are for calls that got no answer, never for a tool that answered). The
proxy is no stricter than the client behind it: a listing the SDK's own client would refuse passes as sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
from guard_mcp import list_tools_as_sent
from mcp.client.session import ClientSession
from mcp_reference_world import Agent, reference_stdio, run, stdio_proxy, write_open_policy

from guard import Guard


def _texts(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _calls(client: ClientSession) -> list[Any]:
    # Two calls of their own (a key each): to Guard, no arguments and `{}` are the same arguments.
    return [
        _texts(await client.call_tool("test_arguments", meta={"idempotency_key": "none"})),
        _texts(await client.call_tool("test_arguments", {}, meta={"idempotency_key": "empty"})),
        (await client.call_tool("test_error_handling", {})).model_dump(exclude={"meta"}),
    ]


def test_omitted_arguments_stay_omitted_and_an_error_result_of_a_read_tool_is_not_retried(
    tmp_path: Path, db_path: Path
) -> None:
    policies = write_open_policy(tmp_path / "policies")
    plain = run(reference_stdio(), Agent(), _calls)
    through = run(stdio_proxy(policies, db_path, "results"), Agent(), _calls)
    assert through == plain
    assert plain[:2] == ["null", "{}"]  # the upstream tells a call without arguments from one with none
    assert plain[2]["is_error"] is True
    with Guard(policies=policies, db=f"sqlite:///{db_path}", log_level="error") as guard:
        calls = [(c.tool, c.state, c.attempts) for c in guard.ledger.calls_of("ref:results")]
    assert calls == [
        ("test_arguments", "completed", 1),
        ("test_arguments", "completed", 1),
        ("test_error_handling", "failed", 1),
    ]  # `read`, retried up to 3 times, but it answered


async def _lax(client: ClientSession) -> list[Any]:
    listed = await list_tools_as_sent(client)  # as a client that takes any schema reads it
    call = types.CallToolRequest(params=types.CallToolRequestParams(name="test_lax_schema", arguments={"x": "1"}))
    result = await client.send_request(call, types.CallToolResult)
    return [[t for t in listed["tools"] if t["name"] == "test_lax_schema"], _texts(result)]


def test_a_tool_schema_without_type_object_is_listed_and_called_through_the_proxy_as_directly(
    tmp_path: Path, db_path: Path
) -> None:
    policies = write_open_policy(tmp_path / "policies")
    plain = run(reference_stdio(REFERENCE_LAX_SCHEMAS="1"), Agent(), _lax)
    through = run(stdio_proxy(policies, db_path, "lax", REFERENCE_LAX_SCHEMAS="1"), Agent(), _lax)
    assert through == plain
    assert plain[0] == [
        {
            "name": "test_lax_schema",
            "description": "A tool whose schema has no type",
            "inputSchema": {"properties": {"x": {"type": "string"}}},
        }
    ]
    assert plain[1] == 'lax: {"x": "1"}'
