"""The clients people use, through the proxy: the `mcp` SDK's own high-level `Client` in its default mode
(it probes `server/discover` and speaks the 2026-07-28 per-request envelope when the server does), over stdio
and over streamable HTTP, and the legacy handshake beside it on the same proxy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types.version import LATEST_MODERN_VERSION
from mcp_world import (
    SERVER,
    effects,
    free_port,
    ledger_calls,
    outcome,
    processes,
    proxy_args,
    server_env,
    stdio_proxy,
    write_policy,
)

ANN = {"email": "ann@acme.io", "name": "Ann"}


async def _agent(client: Client) -> list[Any]:
    listed = await client.list_tools()
    return [
        client.protocol_version,
        {t.name for t in listed.tools},
        await client.call_tool("upsert_contact", ANN),
        await client.call_tool("delete_all_leads", {}),
    ]


def _check(version: str, names: set[str], upsert: types.CallToolResult, denied: types.CallToolResult) -> None:
    assert {"upsert_contact", "delete_all_leads", "send_quote"} <= names
    assert not upsert.is_error and upsert.structured_content == {"contact_id": "c-ann"}
    assert outcome(denied)["outcome"] == "CallDenied"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_sdk_client_in_either_era_lists_and_calls_through_the_stdio_proxy(
    tmp_path: Path, ledger_url: str, mode: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    params: StdioServerParameters = stdio_proxy(policies, ledger_url, log, "client-1")

    async def main() -> list[Any]:
        async with Client(params, mode=mode) as client:  # pyright: ignore[reportArgumentType] - a ConnectMode literal
            return await _agent(client)

    version, names, upsert, denied = anyio.run(main)
    _check(version, names, upsert, denied)
    assert (version == LATEST_MODERN_VERSION) == (mode == "auto")  # the default client speaks the newest era
    assert [e["kind"] for e in effects(log)] == ["upsert"]
    assert ledger_calls(policies, ledger_url, "crm:client-1") == [
        ("upsert_contact", "completed"),
        ("delete_all_leads", "denied"),
    ]


def test_the_sdk_client_in_its_default_mode_is_guarded_through_the_http_proxy(tmp_path: Path, ledger_url: str) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    with processes(tmp_path) as procs:
        port = free_port()
        proxy = procs.start_http(
            "proxy",
            [
                *proxy_args(policies, ledger_url, "client-2", "--serve", "http", "--port", str(port)),
                "--",
                sys.executable,
                str(SERVER),
            ],
            server_env(log),
            port,
        )

        async def main() -> list[Any]:
            async with Client(proxy.url) as client:
                first = await _agent(client)
            async with Client(proxy.url, mode="legacy") as client:  # a handshake-era client on the same proxy
                return [*first, await client.call_tool("upsert_contact", ANN)]

        version, names, upsert, denied, again = anyio.run(main)
    _check(version, names, upsert, denied)
    assert version == LATEST_MODERN_VERSION
    assert again.structured_content == upsert.structured_content  # the same run: recorded, not run again
    assert [e["kind"] for e in effects(log)] == ["upsert"]


TS_CLIENT = Path(__file__).with_name("ts_client")


def _ts_client(config: dict[str, Any]) -> dict[str, Any]:
    """Run the TypeScript SDK's client (tests/adapters/ts_client/client.mjs) under node; its JSON report."""
    subprocess.run([str(TS_CLIENT / "ensure")], check=True, timeout=300)
    done = subprocess.run(
        ["node", str(TS_CLIENT / "client.mjs"), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


TS_CALLS: list[list[Any]] = [
    ["upsert_contact", ANN],
    ["delete_all_leads", {}],
    ["send_quote", {"email": "ann@acme.io", "amount_cents": 900}],
]


def _check_ts(report: dict[str, Any], run_id: str) -> None:
    schemas = {t["name"]: t["outputSchema"] for t in report["tools"]}
    assert schemas["delete_all_leads"] is not None and schemas["send_quote"] is not None  # the SDK checks these
    upsert, denied, waiting = report["calls"]
    assert "error" not in denied and "error" not in waiting, report["calls"]  # no "data must have ..." errors
    assert upsert["result"]["structuredContent"] == {"contact_id": "c-ann"}
    for call, kind in ((denied, "CallDenied"), (waiting, "ApprovalPending")):
        result = call["result"]
        assert result["isError"] is True and "structuredContent" not in result
        assert result["_meta"]["guard/outcome"]["outcome"] == kind
        assert result["_meta"]["guard/outcome"]["run_id"] == run_id
        assert result["content"][0]["text"].startswith("[guard] ")
    assert "waits for approval" in waiting["result"]["content"][0]["text"]


def test_the_typescript_sdk_client_gets_guards_reasons_not_schema_errors_over_stdio(
    tmp_path: Path, ledger_url: str
) -> None:
    """The TS SDK checks `structuredContent` against the tool's `outputSchema`: Guard's denial and wait reach it
    as error results with Guard's reason in the text and its facts in `_meta`, never as a schema failure."""
    policies = write_policy(tmp_path / "policies")
    params = stdio_proxy(policies, ledger_url, tmp_path / "effects.jsonl", "ts-1")
    report = _ts_client({"command": params.command, "args": params.args, "env": params.env, "calls": TS_CALLS})
    _check_ts(report, "crm:ts-1")
    assert [state for _, state in ledger_calls(policies, ledger_url, "crm:ts-1")] == [
        "completed",
        "denied",
        "awaiting_approval",
    ]


def test_the_typescript_sdk_client_gets_guards_reasons_over_streamable_http(tmp_path: Path, ledger_url: str) -> None:
    policies = write_policy(tmp_path / "policies")
    with processes(tmp_path) as procs:
        port = free_port()
        proxy = procs.start_http(
            "proxy",
            [
                *proxy_args(policies, ledger_url, "ts-2", "--serve", "http", "--port", str(port)),
                "--",
                sys.executable,
                str(SERVER),
            ],
            server_env(tmp_path / "effects.jsonl"),
            port,
        )
        report = _ts_client({"url": proxy.url, "calls": TS_CALLS})
    _check_ts(report, "crm:ts-2")


def test_a_tools_own_error_result_reaches_the_client_as_the_upstream_sent_it_with_guards_facts_in_meta(
    tmp_path: Path, ledger_url: str
) -> None:
    """Direct and through the proxy, the same call gets the same result, but for `_meta["guard/outcome"]`."""
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    broken = {"customer": "acme", "plan": "broken"}
    direct = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=server_env(log))

    async def main() -> list[types.CallToolResult]:
        results: list[types.CallToolResult] = []
        for params in (direct, stdio_proxy(policies, ledger_url, log, "own-error")):
            async with Client(params) as client:
                results.append(await client.call_tool("provision_account", broken))
        return results

    plain, proxied = anyio.run(main)
    assert plain.is_error and "no such plan" in " ".join(getattr(c, "text", "") for c in plain.content)
    guard_facts = outcome(proxied)
    assert guard_facts["outcome"] == "CallFailed" and "no such plan" in guard_facts["message"]
    assert proxied.model_dump(exclude={"meta"}) == plain.model_dump(exclude={"meta"})  # content, isError, ...
    assert set(proxied.meta or {}) - set(plain.meta or {}) == {"guard/outcome"}
    assert ledger_calls(policies, ledger_url, "crm:own-error") == [("provision_account", "failed")]
