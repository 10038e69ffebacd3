"""What the proxy relays besides tools, compared with the same requests sent to the upstream directly: its
identity and capabilities, prompts, completions, the log level, resources (a read is a guarded `read` call of the
run under `resource:<uri>`; a URI the policy does not name is denied)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import PromptReference
from mcp_types.version import LATEST_MODERN_VERSION
from mcp_world import SERVER, effects, ledger_calls, server_env, stdio_proxy, write_policy


async def _tour(client: Client) -> dict[str, Any]:
    caps = client.server_capabilities
    prompt = await client.get_prompt("follow_up", {"name": "Ann", "tone": "formal"})
    tones = await client.complete(PromptReference(name="follow_up"), {"name": "tone", "value": "f"})
    if caps.logging is not None and client.protocol_version != LATEST_MODERN_VERSION:  # a handshake-era request
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # the SDK warns of the deprecation; we relay it
            await client.set_logging_level("info")  # pyright: ignore[reportDeprecated] - relayed while servers offer it
    return {
        "server": client.server_info.name if client.server_info else None,
        "capabilities": (
            caps.prompts is not None,
            caps.resources is not None,
            caps.completions is not None,
            caps.logging is not None,
        ),
        "prompts": [p.name for p in (await client.list_prompts()).prompts],
        "prompt": prompt.model_dump(exclude={"meta"}),
        "tones": tones.completion.values,
        "resources": sorted(str(r.uri) for r in (await client.list_resources()).resources),
        "templates": [t.uri_template for t in (await client.list_resource_templates()).resource_templates],
        "terms": (await client.read_resource("crm://docs/terms")).model_dump(exclude={"meta"}),
    }


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_prompts_completions_and_resources_through_the_proxy_are_what_the_upstream_answers(
    tmp_path: Path, ledger_url: str, mode: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    direct = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=server_env(log))
    proxied = stdio_proxy(policies, ledger_url, log, f"relay-{mode}")

    async def main() -> list[Any]:
        answers: list[Any] = []
        for params in (direct, proxied):
            async with Client(params, mode=mode) as client:  # pyright: ignore[reportArgumentType] - a ConnectMode literal
                answers.append(await _tour(client))
                try:
                    await client.read_resource("crm://notes/private")
                    answers.append(None)
                except MCPError as exc:
                    answers.append(exc)
        return answers

    plain, plain_private, through, denied = anyio.run(main)
    assert through == plain
    assert plain["server"] == "crm" and plain["capabilities"][:3] == (True, True, True)
    assert plain["tones"] == ["formal"] and "Net 30" in str(plain["terms"])
    assert plain_private is None  # the upstream alone serves it
    assert isinstance(denied, MCPError) and denied.message.startswith("[guard] ")
    assert "resource:crm://notes/private" in denied.message
    assert ledger_calls(policies, ledger_url, f"crm:relay-{mode}") == [
        ("resource:crm://docs/terms", "completed"),
        ("resource:crm://notes/private", "denied"),
    ]
    assert effects(log) == []
