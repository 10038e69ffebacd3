"""One guarded call through the installed package with one extra: run by `tests/package/check.py` inside a fresh
virtual environment, from a scratch directory (so `guard` comes from the installed wheel, never the checkout).

`python guarded_call.py EXTRA` with EXTRA one of core, server, langchain, mcp, openai-agents, pydantic-ai, otel.
Prints `ok EXTRA: <what ran>` and exits 0, or fails with the traceback.
"""
# pyright: basic
# This script runs in the package check's throwaway environments, each with one extra: strict mode would need every
# framework installed at once.

from __future__ import annotations

import asyncio
import importlib.metadata
import sys
import tempfile
from pathlib import Path
from typing import Any

POLICY = """\
team: pkg
reviewers:
  rita: [ops]
rules:
  - {name: reads, tools: [pkg.lookup, lookup], class: read}
  - {name: gated, tools: [pkg.send], class: irreversible, approval: {roles: [ops]}}
"""
# What the core alone must not pull in: the server's packages and every framework's.
NOT_IN_CORE = {
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "prometheus-client",
    "python-multipart",
    "langchain",
    "langchain-core",
    "langgraph",
    "mcp",
    "openai-agents",
    "openai",
    "pydantic-ai-slim",
    "pydantic-ai",
    "opentelemetry-api",
    "psycopg",
}
UPSTREAM = '''
from mcp.server.mcpserver import MCPServer
server = MCPServer("pkg")

@server.tool()
def lookup(sku: str) -> dict:
    """Look a stock-keeping unit up."""
    return {"sku": sku, "stock": 3}

server.run()
'''


def lookup(sku: str) -> dict[str, Any]:
    """Look a stock-keeping unit up."""
    return {"sku": sku, "stock": 3}


def setup(folder: Path) -> tuple[Path, str]:
    policies = folder / "policies"
    policies.mkdir()
    (policies / "pkg.yaml").write_text(POLICY)
    return policies, f"sqlite:///{folder / 'guard.db'}"


def core(folder: Path) -> str:
    from guard import Guard

    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    pulled = sorted(installed & NOT_IN_CORE)
    assert not pulled, f"the core alone installed {pulled}"
    policies, db = setup(folder)
    with Guard(policies=policies, db=db, log_level="error") as guard:
        tool = guard.tool(lookup, name="pkg.lookup")
        with guard.run("pkg"):
            assert tool(sku="A-1") == {"sku": "A-1", "stock": 3}
    return f"Guard call completed; none of {len(NOT_IN_CORE)} server/framework packages installed"


def server(folder: Path) -> str:
    from fastapi.testclient import TestClient

    from guard import ApprovalPending, Guard, Ledger
    from guard.server import create_app

    policies, db = setup(folder)
    sent: list[str] = []
    with Guard(policies=policies, db=db, log_level="error", approval="defer") as guard:
        tool = guard.tool(lambda to: sent.append(to) or {"message_id": "m-1"}, name="pkg.send")
        try:
            with guard.run("pkg", run_id="run-1"):
                tool(to="ada@example.com")
            raise AssertionError("the send did not wait for approval")
        except ApprovalPending as pending:
            approval_id = pending.approval_id
        ledger = Ledger(db)
        _, token = ledger.create_token("rita", by="package-check")
        with TestClient(create_app(db, policies, notify_every=None)) as client:
            shown = client.get(f"/api/approvals/{approval_id}", headers={"Authorization": f"Bearer {token}"})
            assert shown.status_code == 200, shown.text
            decided = client.post(
                f"/api/approvals/{approval_id}/decision",
                headers={"Authorization": f"Bearer {token}"},
                json={"decision": "approve", "args_hash": shown.json()["args_hash"]},
            )
            assert decided.status_code == 200, decided.text
            page = client.get("/login")
            assert page.status_code == 200, page.text
        ledger.close()
        with guard.run("pkg", run_id="run-1"):
            assert tool(to="ada@example.com") == {"message_id": "m-1"}
    assert sent == ["ada@example.com"]
    return "call waited, approved over the REST API, then ran once; /login page served"


def langchain(folder: Path) -> str:
    from guard_langchain import guard_tool
    from langchain_core.tools import StructuredTool

    from guard import Guard

    policies, db = setup(folder)
    with Guard(policies=policies, db=db, log_level="error") as guard:
        tool = guard_tool(guard, StructuredTool.from_function(lookup), name="pkg.lookup")
        with guard.run("pkg"):
            out = tool.invoke({"sku": "A-1"})
    assert "A-1" in str(out), out
    return "LangChain StructuredTool invoked through guard_tool"


def mcp(folder: Path) -> str:
    from guard_mcp import connect, stdio_upstream

    policies, db = setup(folder)
    server_file = folder / "upstream.py"
    server_file.write_text(UPSTREAM)
    proxy = [
        sys.executable,
        "-m",
        "guard_mcp",
        "--policies",
        str(policies),
        "--db",
        db,
        "--team",
        "pkg",
        "--event",
        "e-1",
        "--log-level",
        "error",
        "--",
        sys.executable,
        str(server_file),
    ]

    async def call() -> Any:
        async with connect(stdio_upstream(proxy)) as client:
            return await client.call_tool("lookup", {"sku": "A-1"})

    result = asyncio.run(call())
    assert not result.is_error and "A-1" in str(result.content), result
    return "MCP client -> guard_mcp proxy -> MCP server over stdio"


def openai_agents(folder: Path) -> str:
    from agents import Agent, RunConfig, Runner, function_tool
    from guard_openai_agents import GuardedTools
    from guard_openai_agents.testing import ScriptedModel, calls, function_call

    from guard import Guard

    policies, db = setup(folder)
    with Guard(policies=policies, db=db, log_level="error") as guard:
        tools = GuardedTools(guard, team="pkg", names={"lookup": "pkg.lookup"}).wrap([function_tool(lookup)])
        model = ScriptedModel([calls(function_call("lookup", {"sku": "A-1"}, "call_1"))])
        with guard.run("pkg") as run:
            Runner.run_sync(
                Agent(name="pkg", tools=tools, model=model), "go", run_config=RunConfig(tracing_disabled=True)
            )
        [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "completed", call.state
    return "Agents SDK Runner (scripted model) called the wrapped function tool"


def pydantic_ai(folder: Path) -> str:
    from guard_pydantic_ai import ToolGuard
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from guard import Guard

    def script(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("lookup", {"sku": "A-1"}, tool_call_id="call_1")])
        return ModelResponse(parts=[TextPart("done")])

    policies, db = setup(folder)
    with Guard(policies=policies, db=db, log_level="error") as guard:
        tools = ToolGuard(guard, team="pkg", names={"lookup": "pkg.lookup"})
        agent = Agent(FunctionModel(script), tools=[lookup], capabilities=[tools.capability()])
        with guard.run("pkg") as run:
            agent.run_sync("go")
        [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "completed", call.state
    return "Pydantic AI Agent (FunctionModel) called the tool through ToolGuard"


def otel(folder: Path) -> str:
    from guard import Guard, trace_context

    policies, db = setup(folder)
    with Guard(policies=policies, db=db, log_level="error") as guard:
        assert guard.tracing is not None, "the API is installed but Guard does not trace"
        tool = guard.tool(lookup, name="pkg.lookup")
        with guard.run("pkg"):
            tool(sku="A-1")
    assert trace_context() == {}  # no SDK: nothing recording, no context to hand on
    return "Guard traces through the API alone (no SDK: non-recording spans)"


CHECKS = {
    "core": core,
    "server": server,
    "langchain": langchain,
    "mcp": mcp,
    "openai-agents": openai_agents,
    "pydantic-ai": pydantic_ai,
    "otel": otel,
}

if __name__ == "__main__":
    extra = sys.argv[1]
    with tempfile.TemporaryDirectory() as scratch:
        print(f"ok {extra}: {CHECKS[extra](Path(scratch))}")
