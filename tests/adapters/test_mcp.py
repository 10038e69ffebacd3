"""The MCP proxy with real MCP processes: a real client session over stdio to `python -m guard_mcp`, in front of
a real MCP server subprocess (`mcp_crm_server.py`), on a real SQLite ledger file."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from guard_mcp import suggest_class, suggest_policy
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from guard import Guard

SERVER = Path(__file__).with_name("mcp_crm_server.py")
ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"  # the proxy subprocess imports guard_mcp from here

Session = Callable[[ClientSession], Awaitable[Any]]


def _proxy(policy_dir: Path, ledger_url: str, effects: Path, event: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "guard_mcp",
            "--policies",
            str(policy_dir),
            "--db",
            ledger_url,
            "--team",
            "funnel",
            "--event",
            event,
            "--log-level",
            "error",
            "--",
            sys.executable,
            str(SERVER),
        ],
        env={"PYTHONPATH": os.pathsep.join([str(ADAPTERS), str(ADAPTERS.parent)]), "CRM_EFFECTS": str(effects)},
    )


def _session(params: StdioServerParameters, work: Session) -> Any:
    async def main() -> Any:
        with open(os.devnull, "w") as quiet:
            async with stdio_client(params, errlog=quiet) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)

    return anyio.run(main)


def _effects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _text(result: types.CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture
def effects(tmp_path: Path) -> Path:
    return tmp_path / "crm-effects.jsonl"


def test_the_proxy_forwards_allowed_calls_denies_unnamed_tools_and_never_repeats_an_effect(
    policy_dir: Path, ledger_url: str, effects: Path
) -> None:
    async def work(session: ClientSession) -> list[types.CallToolResult]:
        listed = await session.list_tools()
        assert {"upsert_contact", "delete_all_leads"} <= {t.name for t in listed.tools}
        args = {"email": "ann@acme.io", "name": "Ann"}
        return [
            await session.call_tool("upsert_contact", args),
            await session.call_tool("delete_all_leads", {}),
            await session.call_tool("upsert_contact", args),
        ]  # sent again: the same action

    first, denied, again = _session(_proxy(policy_dir, ledger_url, effects, "mcp-1"), work)
    assert not first.is_error and first.structured_content == {"contact_id": "c-ann"}
    assert (denied.is_error and "no rule" in _text(denied).lower()) or "denied" in _text(denied)
    assert denied.structured_content is None and denied.meta is not None
    assert denied.meta["guard/outcome"] == {
        "outcome": "CallDenied",
        "state": "denied",
        "run_id": "funnel:mcp-1",
        "call_id": denied.meta["guard/outcome"]["call_id"],
    }
    assert not again.is_error and again.structured_content == first.structured_content
    assert [e["kind"] for e in _effects(effects)] == ["upsert"]  # once; the read-only-annotated delete never ran
    with Guard(policies=policy_dir, db=ledger_url, log_level="error") as guard:
        calls = guard.ledger.calls_of("funnel:mcp-1")
        assert [(c.tool, c.state) for c in calls] == [("upsert_contact", "completed"), ("delete_all_leads", "denied")]


def test_a_call_resent_after_a_reconnect_or_under_its_meta_key_runs_once(
    policy_dir: Path, ledger_url: str, effects: Path
) -> None:
    args = {"email": "bo@acme.io", "name": "Bo"}

    async def send(session: ClientSession) -> types.CallToolResult:
        return await session.call_tool("upsert_contact", args, meta={"guard/idempotency_key": "lead-bo"})

    one = _session(_proxy(policy_dir, ledger_url, effects, "mcp-2"), send)
    two = _session(_proxy(policy_dir, ledger_url, effects, "mcp-2"), send)  # the client reconnected
    assert not one.is_error and two.structured_content == one.structured_content
    assert len(_effects(effects)) == 1
    with Guard(policies=policy_dir, db=ledger_url, log_level="error") as guard:
        (call,) = guard.ledger.calls_of("funnel:mcp-2")
        assert (call.idempotency_key, call.state) == ("lead-bo", "completed")


def test_annotations_only_suggest_a_class_and_the_strictest_reading_wins() -> None:
    def tool(**hints: Any) -> types.Tool:
        return types.Tool(name="t", input_schema={"type": "object"}, annotations=types.ToolAnnotations(**hints))

    assert suggest_class(tool(read_only_hint=True)) == "read"
    assert suggest_class(tool(read_only_hint=True, destructive_hint=True)) == "irreversible"
    assert suggest_class(tool(idempotent_hint=True, destructive_hint=False)) == "idempotent"
    assert suggest_class(tool(idempotent_hint=True)) == "irreversible"  # destructiveHint defaults to true
    assert suggest_class(tool()) == "irreversible"
    assert suggest_class(types.Tool(name="t", input_schema={"type": "object"})) == "irreversible"
    draft = suggest_policy("crm", [tool(read_only_hint=True)])
    assert "class: read" in draft and "Review every rule" in draft
