"""The same exchanges with the reference server, directly and through the proxy, compared message by message on the
client's wire: requests, results, notifications, and the server's requests to the client with the client's
answers. They are identical but for what Guard documents it adds: `_meta["guard/outcome"]` on a tool's own error
result (`adapters/README.md`). JSON-RPC ids are each side's own counters and are left out of the comparison."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage
from mcp_reference_world import Agent, reference_stdio, set_level, stdio_proxy, subscribe, write_open_policy

Wire = list[tuple[str, dict[str, Any]]]  # ("client" | "server", the JSON-RPC message as sent)


@asynccontextmanager
async def recorded(params: StdioServerParameters, agent: Agent, wire: Wire) -> AsyncGenerator[ClientSession]:
    """A client session over stdio whose every message, both ways, is appended to `wire` as it passes."""
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write), anyio.create_task_group() as pumps:
            to_client, client_reads = anyio.create_memory_object_stream[SessionMessage | Exception](100)
            client_writes, to_server = anyio.create_memory_object_stream[SessionMessage](100)

            async def inbound() -> None:
                async for item in read:
                    if isinstance(item, SessionMessage):
                        wire.append(("server", item.message.model_dump(by_alias=True, exclude_none=True)))
                    await to_client.send(item)

            async def outbound() -> None:
                async for item in to_server:
                    wire.append(("client", item.message.model_dump(by_alias=True, exclude_none=True)))
                    await write.send(item)

            async with to_client, client_reads, client_writes, to_server:
                pumps.start_soon(inbound)
                pumps.start_soon(outbound)
                async with ClientSession(client_reads, client_writes, **agent.options()) as session:
                    await session.initialize()
                    yield session
                pumps.cancel_scope.cancel()


async def _exchanges(client: ClientSession) -> None:
    await set_level(client, "debug")
    await client.list_tools()
    for name, args in [
        ("test_simple_text", {}),
        ("test_multiple_content_types", {}),
        ("test_error_handling", {}),
        ("test_tool_with_logging", {}),
        ("test_sampling", {"prompt": "hi"}),
        ("test_elicitation", {"message": "who?"}),
        ("test_roots", {}),
        ("test_list_changed", {}),
    ]:
        await client.call_tool(name, args)
    await client.call_tool("test_tool_with_progress", {}, progress_callback=_ignore)
    await client.list_resources()
    await client.read_resource("test://static-text")
    await subscribe(client, "test://watched-resource")
    await client.list_prompts()
    await client.get_prompt("test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
    await client.send_ping()


async def _ignore(progress: float, total: float | None, message: str | None) -> None:
    return None


def _result_meta(message: dict[str, Any]) -> dict[str, Any]:
    result: Any = message.get("result")
    meta: Any = cast(dict[str, Any], result).get("_meta") if isinstance(result, dict) else None
    return cast(dict[str, Any], meta) if isinstance(meta, dict) else {}


def _comparable(wire: Wire) -> list[tuple[str, dict[str, Any]]]:
    """The wire without JSON-RPC ids, and without the one fact Guard documents adding (`guard/outcome`)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for side, message in wire:
        message = {k: v for k, v in message.items() if k != "id"}
        result = message.get("result")
        if isinstance(result, dict) and isinstance(result.get("_meta"), dict):
            meta = {k: v for k, v in result["_meta"].items() if k != "guard/outcome"}
            message["result"] = {
                **{k: v for k, v in result.items() if k != "_meta"},
                **({"_meta": meta} if meta else {}),
            }
        out.append((side, message))
    return out


def test_the_same_exchanges_directly_and_through_the_proxy_are_the_same_messages_but_for_guards_meta(
    tmp_path: Path, db_path: Path
) -> None:
    policies = write_open_policy(tmp_path / "policies")
    wires: list[Wire] = [[], []]

    async def main() -> None:
        for params, wire in ((reference_stdio(), wires[0]), (stdio_proxy(policies, db_path, "wire"), wires[1])):
            async with recorded(params, Agent(), wire) as client:
                await _exchanges(client)

    anyio.run(main)
    direct, proxied = wires
    added = [
        meta["guard/outcome"]["outcome"]
        for side, m in proxied
        if side == "server" and "guard/outcome" in (meta := _result_meta(m))
    ]
    assert added == ["CallFailed"]  # the tool's own error result, Guard's outcome beside it
    assert _comparable(proxied) == _comparable(direct)
    methods = [m.get("method") for _, m in direct if "method" in m]
    for expected in (
        "sampling/createMessage",
        "elicitation/create",
        "roots/list",
        "notifications/progress",
        "notifications/message",
        "notifications/tools/list_changed",
        "notifications/resources/updated",
    ):
        assert expected in methods
