"""Our reference MCP server for the conformance suite's server scenarios (the `mcp` SDK's lowlevel `Server`).

It does what the scenario descriptions of `@modelcontextprotocol/conformance` (tests/adapters/conformance/) ask of
a server: the `test_*` tools (text, image, audio, embedded resource, mixed content, logging, an error result,
progress, sampling, elicitation with defaults and enums, a JSON Schema 2020-12 input schema), the `test://`
resources and template, subscriptions, the `test_*` prompts, completion and the log level. Besides the suite:
`test_roots` asks the client for its roots, `test_list_changed` announces changed tools, prompts and resources,
`test_log_levels` logs once at each level (kept by each client session's own `logging/setLevel`),
`test_arguments` says which arguments it got, and
subscribing to a resource answers with a `notifications/resources/updated` for it.

The 2026-07-28 era's `subscriptions/listen` is served by the SDK's `ListenHandler` on one bus per process: every
listen stream of the process gets what it asked for. `test_list_changed` announces on the bus too,
`test_update_resource` announces that one URI changed (on the bus, and to the calling session if it subscribed),
`test_open_listens` says how many listen streams are open, `test_close_listens` ends them gracefully, and the
clocks `test://clock/1` and `test://clock/2` announce an update every `TICK` seconds (on the bus only): events
that start in the process itself, which a listen stream on a process of its own (a stdio upstream) hears too.

For counting its sessions from its own side: with `REFERENCE_SESSIONS=FILE` each process appends `+PID` to FILE
when it starts and `-PID` when it is done serving (a stdio server is one session per process), and `test_hold`
reports progress 0 of 1 (it runs), then answers once the file `REFERENCE_GATE` names exists.

With `REFERENCE_LAX_SCHEMAS=1` it also lists `test_lax_schema`, whose input schema has no `type: object` (the SDK's
own client refuses such a listing; a laxer client takes it), sent as is past the SDK server's own check.

`python mcp_reference_server.py` serves over stdio; `python mcp_reference_server.py --http PORT` over streamable
HTTP on 127.0.0.1 (DNS rebinding protection on, as the SDK sets it for loopback).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp.shared.message import ServerMessageMetadata

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8cfc0f01f0005000201"
        "a5f6e7a40000000049454e44ae426082"
    )
).decode()
WAV = base64.b64encode(
    b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00D\xac\x00\x00\x88X\x01\x00"
    b"\x02\x00\x10\x00data\x00\x00\x00\x00"
).decode()
LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}


def _tool(name: str, description: str, schema: dict[str, Any] | None = None) -> types.Tool:
    return types.Tool.model_validate({"name": name, "description": description, "inputSchema": schema or NO_ARGS})


TOOLS = [
    _tool("test_simple_text", "Returns a simple text"),
    _tool("test_image_content", "Returns an image"),
    _tool("test_audio_content", "Returns audio"),
    _tool("test_embedded_resource", "Returns an embedded resource"),
    _tool("test_multiple_content_types", "Returns text, an image and a resource"),
    _tool("test_tool_with_logging", "Logs three messages while it runs"),
    _tool("test_error_handling", "Always answers with an error result"),
    _tool("test_tool_with_progress", "Reports progress 0, 50, 100"),
    _tool(
        "test_sampling",
        "Asks the client's LLM",
        {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
    ),
    _tool(
        "test_elicitation",
        "Asks the user",
        {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    ),
    _tool("test_elicitation_sep1034_defaults", "Asks the user, with defaults"),
    _tool("test_elicitation_sep1330_enums", "Asks the user, with every enum form"),
    _tool(
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    ),
    _tool("test_reconnection", "Answers after a short while"),
    _tool("test_roots", "Asks the client for its roots"),
    _tool("test_list_changed", "Announces changed tools, prompts and resources"),
    _tool("test_log_levels", "Logs once at every level; the session's level filters"),
    _tool("test_arguments", "Says which arguments it got (null: none were sent)"),
    _tool(
        "test_update_resource",
        "Announces that the resource at uri changed",
        {"type": "object", "properties": {"uri": {"type": "string"}}, "required": ["uri"]},
    ),
    _tool("test_open_listens", "Says how many subscriptions/listen streams are open"),
    _tool("test_close_listens", "Ends every open subscriptions/listen stream gracefully"),
    _tool("test_hold", "Reports that it runs, then answers once the file $REFERENCE_GATE exists"),
]
CLOCKS = ("test://clock/1", "test://clock/2")
TICK = 0.1  # seconds between two updates of each clock


class CountingBus(InMemorySubscriptionBus):
    """The SDK's in-process bus, counting its listeners (one per open listen stream)."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners = 0

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        unsubscribe = super().subscribe(listener)
        self.listeners += 1
        done = False

        def once() -> None:
            nonlocal done
            if not done:
                done = True
                self.listeners -= 1
                unsubscribe()

        return once


BUS = CountingBus()
LISTENS = ListenHandler(BUS)


async def tick() -> None:
    """Each clock announces an update every `TICK` seconds, forever."""
    while True:
        await anyio.sleep(TICK)
        for uri in CLOCKS:
            await BUS.publish(ResourceUpdated(uri=uri))


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _related(ctx: ServerRequestContext[Any]) -> ServerMessageMetadata:
    return ServerMessageMetadata(related_request_id=ctx.request_id)


def _session_state(ctx: ServerRequestContext[Any]) -> dict[str, Any]:
    # Per client session, like a real server keeps it (the SDK holds the connection privately in the lowlevel ctx).
    return ctx.session._connection.state  # pyright: ignore[reportPrivateUsage]


async def _log(ctx: ServerRequestContext[Any], level: str, text: str) -> None:
    floor = _session_state(ctx).get("level", "debug")
    if LEVELS.index(level) >= LEVELS.index(floor):
        await ctx.session.send_notification(
            types.LoggingMessageNotification.model_validate({"params": {"level": level, "data": text}}),
            related_request_id=ctx.request_id,
        )


async def _ask(ctx: ServerRequestContext[Any], request: Any, result: type[Any]) -> Any:
    return await ctx.session.send_request(request, result, metadata=_related(ctx))


def _elicit(message: str, schema: dict[str, Any]) -> types.ElicitRequest:
    return types.ElicitRequest.model_validate({"params": {"message": message, "requestedSchema": schema}})


DEFAULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "default": True},
    },
}
ENUMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [{"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [{"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"}]
            },
        },
    },
}


async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    args = params.arguments or {}
    content: list[dict[str, Any]]
    match params.name:
        case "test_simple_text" | "json_schema_2020_12_tool" | "test_reconnection":
            content = [_text("This is a simple text response for testing.")]
        case "test_image_content":
            content = [{"type": "image", "data": PNG, "mimeType": "image/png"}]
        case "test_audio_content":
            content = [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]
        case "test_embedded_resource":
            content = [
                {
                    "type": "resource",
                    "resource": {
                        "uri": "test://embedded-resource",
                        "mimeType": "text/plain",
                        "text": "This is an embedded resource content.",
                    },
                }
            ]
        case "test_multiple_content_types":
            content = [
                _text("Multiple content types test:"),
                {"type": "image", "data": PNG, "mimeType": "image/png"},
                {
                    "type": "resource",
                    "resource": {
                        "uri": "test://mixed-content-resource",
                        "mimeType": "application/json",
                        "text": json.dumps({"test": "data", "value": 123}),
                    },
                },
            ]
        case "test_tool_with_logging":
            for i, text in enumerate(["Tool execution started", "Tool processing data", "Tool execution completed"]):
                if i:
                    await anyio.sleep(0.05)  # the scenario asks for messages spread over the call
                await _log(ctx, "info", text)
            content = [_text("Logging test completed")]
        case "test_log_levels":
            for level in LEVELS:
                await _log(ctx, level, f"a {level} message")
            content = [_text("logged")]
        case "test_error_handling":
            return types.CallToolResult.model_validate(
                {"isError": True, "content": [_text("This tool intentionally returns an error for testing")]}
            )
        case "test_tool_with_progress":
            for step in (0, 50, 100):
                await ctx.session.report_progress(step, 100)  # on the token the client sent, if it sent one
                if step < 100:
                    await anyio.sleep(0.05)  # the scenario asks for progress spread over the call
            content = [_text("Progress test completed")]
        case "test_sampling":
            answer = await _ask(
                ctx,
                types.CreateMessageRequest.model_validate(
                    {
                        "params": {
                            "messages": [{"role": "user", "content": _text(str(args.get("prompt", "")))}],
                            "maxTokens": 100,
                        }
                    }
                ),
                types.CreateMessageResult,
            )
            said = answer.content.text if isinstance(answer.content, types.TextContent) else str(answer.content)
            content = [_text(f"LLM response: {said}")]
        case "test_elicitation":
            answer = await _ask(
                ctx,
                _elicit(
                    str(args.get("message", "")),
                    {
                        "type": "object",
                        "properties": {
                            "username": {"type": "string", "description": "User's response"},
                            "email": {"type": "string", "description": "User's email address"},
                        },
                        "required": ["username", "email"],
                    },
                ),
                types.ElicitResult,
            )
            content = [_text(f"User response: action={answer.action}, content={json.dumps(answer.content)}")]
        case "test_elicitation_sep1034_defaults" | "test_elicitation_sep1330_enums":
            schema = DEFAULTS_SCHEMA if params.name.endswith("defaults") else ENUMS_SCHEMA
            answer = await _ask(ctx, _elicit("Please answer", schema), types.ElicitResult)
            content = [_text(f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content)}")]
        case "test_roots":
            roots = await _ask(ctx, types.ListRootsRequest(), types.ListRootsResult)
            content = [_text(json.dumps([str(r.uri) for r in roots.roots]))]
        case "test_lax_schema":
            content = [_text(f"lax: {json.dumps(args)}")]
        case "test_arguments":
            content = [_text(json.dumps(params.arguments))]
        case "test_list_changed":
            await ctx.session.send_tool_list_changed()
            await ctx.session.send_prompt_list_changed()
            await ctx.session.send_resource_list_changed()
            for event in (ToolsListChanged(), PromptsListChanged(), ResourcesListChanged()):
                await BUS.publish(event)
            content = [_text("announced")]
        case "test_update_resource":
            uri = str(args.get("uri", ""))
            if uri in _session_state(ctx).get("subscribed", set()):
                await ctx.session.send_resource_updated(uri)
            await BUS.publish(ResourceUpdated(uri=uri))
            content = [_text(f"updated {uri}")]
        case "test_open_listens":
            content = [_text(str(BUS.listeners))]
        case "test_close_listens":
            LISTENS.close()
            content = [_text("closed")]
        case "test_hold":
            await ctx.session.report_progress(0, 1)  # on the token the client sent: the call is running
            gate = Path(os.environ["REFERENCE_GATE"])
            while not gate.exists():
                await anyio.sleep(0.02)  # the stand-in polls its gate; the test waits on this answer
            content = [_text("released")]
        case _:
            return types.CallToolResult.model_validate(
                {"isError": True, "content": [_text(f"Unknown tool: {params.name}")]}
            )
    return types.CallToolResult.model_validate({"content": content})


async def list_tools(
    ctx: ServerRequestContext[Any],
    params: types.PaginatedRequestParams | None,
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


RESOURCES = [
    {"uri": "test://static-text", "name": "static-text", "description": "A static text", "mimeType": "text/plain"},
    {"uri": "test://static-binary", "name": "static-binary", "description": "A PNG", "mimeType": "image/png"},
    {
        "uri": "test://watched-resource",
        "name": "watched",
        "description": "A resource to watch",
        "mimeType": "text/plain",
    },
]


async def list_resources(
    ctx: ServerRequestContext[Any],
    params: types.PaginatedRequestParams | None,
) -> types.ListResourcesResult:
    return types.ListResourcesResult.model_validate({"resources": RESOURCES})


async def list_templates(
    ctx: ServerRequestContext[Any],
    params: types.PaginatedRequestParams | None,
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult.model_validate(
        {
            "resourceTemplates": [
                {
                    "uriTemplate": "test://template/{id}/data",
                    "name": "template",
                    "description": "Data by id",
                    "mimeType": "application/json",
                }
            ]
        }
    )


async def read_resource(
    ctx: ServerRequestContext[Any],
    params: types.ReadResourceRequestParams,
) -> types.ReadResourceResult:
    uri = str(params.uri)
    if uri == "test://static-binary":
        item: dict[str, Any] = {"uri": uri, "mimeType": "image/png", "blob": PNG}
    elif uri.startswith("test://template/") and uri.endswith("/data"):
        id_ = uri.removeprefix("test://template/").removesuffix("/data")
        item = {
            "uri": uri,
            "mimeType": "application/json",
            "text": json.dumps({"id": id_, "templateTest": True, "data": f"Data for ID: {id_}"}),
        }
    elif uri in ("test://static-text", "test://watched-resource"):
        item = {"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."}
    else:
        item = {"uri": uri, "mimeType": "text/plain", "text": f"Resource {uri}"}
    return types.ReadResourceResult.model_validate({"contents": [item]})


async def subscribe(ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
    _session_state(ctx).setdefault("subscribed", set()).add(str(params.uri))
    await ctx.session.send_resource_updated(str(params.uri))  # it changed just now: the subscriber hears of it
    return types.EmptyResult()


async def unsubscribe(ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    _session_state(ctx).setdefault("subscribed", set()).discard(str(params.uri))
    return types.EmptyResult()


PROMPTS = [
    {"name": "test_simple_prompt", "description": "A simple prompt"},
    {
        "name": "test_prompt_with_arguments",
        "description": "A prompt with arguments",
        "arguments": [{"name": "arg1", "required": True}, {"name": "arg2", "required": True}],
    },
    {
        "name": "test_prompt_with_embedded_resource",
        "description": "A prompt with a resource",
        "arguments": [{"name": "resourceUri", "required": True}],
    },
    {"name": "test_prompt_with_image", "description": "A prompt with an image"},
]


async def list_prompts(
    ctx: ServerRequestContext[Any],
    params: types.PaginatedRequestParams | None,
) -> types.ListPromptsResult:
    return types.ListPromptsResult.model_validate({"prompts": PROMPTS})


async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
    args = params.arguments or {}
    messages: list[dict[str, Any]]
    match params.name:
        case "test_prompt_with_arguments":
            messages = [
                {
                    "role": "user",
                    "content": _text(f"Prompt with arguments: arg1='{args.get('arg1')}', arg2='{args.get('arg2')}'"),
                }
            ]
        case "test_prompt_with_embedded_resource":
            messages = [
                {
                    "role": "user",
                    "content": {
                        "type": "resource",
                        "resource": {
                            "uri": args.get("resourceUri", "test://example-resource"),
                            "mimeType": "text/plain",
                            "text": "Embedded resource content for testing.",
                        },
                    },
                },
                {"role": "user", "content": _text("Please process the embedded resource above.")},
            ]
        case "test_prompt_with_image":
            messages = [
                {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
                {"role": "user", "content": _text("Please analyze the image above.")},
            ]
        case _:
            messages = [{"role": "user", "content": _text("This is a simple prompt for testing.")}]
    return types.GetPromptResult.model_validate({"messages": messages})


async def complete(ctx: ServerRequestContext[Any], params: types.CompleteRequestParams) -> types.CompleteResult:
    values = [v for v in ("paris", "park", "party") if v.startswith(params.argument.value)]
    return types.CompleteResult.model_validate(
        {"completion": {"values": values, "total": len(values), "hasMore": False}}
    )


async def set_level(ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
    _session_state(ctx)["level"] = params.level
    return types.EmptyResult()


class _ReferenceServer(Server[Any]):
    def create_initialization_options(
        self, notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        return super().create_initialization_options(
            notification_options
            or NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True),
            *args,
            **kwargs,
        )


LAX_TOOL = {
    "name": "test_lax_schema",
    "description": "A tool whose schema has no type",
    "inputSchema": {"properties": {"x": {"type": "string"}}},
}


async def lax_listing(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
    """`tools/list` with `test_lax_schema`, sent as is (the SDK's server would check it against its own schema)."""
    if ctx.method != "tools/list" or ctx.request_id is None:
        return await call_next(ctx)
    return {"tools": [*(t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in TOOLS), LAX_TOOL]}


def build() -> Server[Any]:
    import warnings

    from mcp.shared.exceptions import MCPDeprecationWarning

    with warnings.catch_warnings():  # logging/setLevel is a handshake-era method the scenarios still test
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server = _ReferenceServer(  # pyright: ignore[reportDeprecated] - the scenarios still test logging/setLevel
            "guard-reference-server",
            version="1.0.0",
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_resources=list_resources,
            on_list_resource_templates=list_templates,
            on_read_resource=read_resource,
            on_subscribe_resource=subscribe,
            on_unsubscribe_resource=unsubscribe,
            on_list_prompts=list_prompts,
            on_get_prompt=get_prompt,
            on_completion=complete,
            on_set_logging_level=set_level,
            on_subscriptions_listen=LISTENS,
        )
    if os.environ.get("REFERENCE_LAX_SCHEMAS") == "1":
        server.middleware.append(lax_listing)
    return server


def _note_session(sign: str) -> None:
    if sessions := os.environ.get("REFERENCE_SESSIONS"):
        with open(sessions, "a") as log:
            log.write(f"{sign}{os.getpid()}\n")


async def main(argv: list[str]) -> None:
    _note_session("+")
    try:
        await _serve(argv)
    finally:
        _note_session("-")


async def _serve(argv: list[str]) -> None:
    server = build()
    async with anyio.create_task_group() as clocks:
        clocks.start_soon(tick)
        if argv[:1] == ["--http"]:
            app = server.streamable_http_app(host="127.0.0.1")
            await uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=int(argv[1]), log_level="warning", lifespan="on")
            ).serve()
        else:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
        clocks.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
