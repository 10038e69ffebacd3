"""What the upstream sends the client passes through the proxy: its requests to the client (sampling,
elicitation, roots) reach the client and the client's answers go back; progress, log messages, list changes and
resource updates reach the client that they are about. Each client has an upstream session of its own, so two
clients at once keep their own log level and get only their own server requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.session import ClientSession
from mcp_reference_world import (
    Agent,
    as_agent,
    http_proxy,
    http_reference,
    reference_stdio,
    run,
    set_level,
    stdio_proxy,
    subscribe,
    write_open_policy,
)
from mcp_world import ledger_calls, processes


def _texts(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _ask_the_client(client: ClientSession) -> list[str]:
    return [
        _texts(await client.call_tool("test_sampling", {"prompt": "hi"})),
        _texts(await client.call_tool("test_elicitation", {"message": "who are you?"})),
        _texts(await client.call_tool("test_roots", {})),
    ]


def test_the_upstreams_requests_reach_the_client_behind_the_proxy_and_its_answers_go_back(
    tmp_path: Path, db_path: Path
) -> None:
    policies = write_open_policy(tmp_path / "policies")
    direct, proxied = Agent("ann", ["file:///work/ann"]), Agent("ann", ["file:///work/ann"])
    plain = run(reference_stdio(), direct, _ask_the_client)
    through = run(stdio_proxy(policies, db_path, "asks"), proxied, _ask_the_client)
    assert through == plain
    assert plain == [
        "LLM response: ann says hello",
        'User response: action=accept, content={"username": "ann", "email": "a@b.c"}',
        '["file:///work/ann"]',
    ]
    assert proxied.asked == direct.asked == ["sampling/createMessage", "elicitation/create", "roots/list"]
    assert [state for _, state in ledger_calls(policies, f"sqlite:///{db_path}", "ref:asks")] == ["completed"] * 3


async def _listen(client: ClientSession) -> list[Any]:
    seen: list[tuple[float, float | None]] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    await set_level(client, "debug")
    await client.call_tool("test_tool_with_progress", {}, progress_callback=progress)
    await client.call_tool("test_tool_with_logging", {})
    await client.call_tool("test_list_changed", {})
    await subscribe(client, "test://watched-resource")
    await client.send_ping()  # a round trip after the last notification: it has arrived
    return seen


def _heard(agent: Agent) -> list[tuple[str, Any]]:
    return [
        (n.method, n.params.model_dump(exclude_none=True) if n.params is not None else None)
        for n in agent.notifications
    ]


def test_progress_log_messages_list_changes_and_resource_updates_reach_the_client_as_sent(
    tmp_path: Path, db_path: Path
) -> None:
    policies = write_open_policy(tmp_path / "policies")
    direct, proxied = Agent(), Agent()
    plain = run(reference_stdio(), direct, _listen)
    through = run(stdio_proxy(policies, db_path, "listen"), proxied, _listen)
    assert through == plain == [(0.0, 100.0), (50.0, 100.0), (100.0, 100.0)]
    assert _heard(proxied) == _heard(direct)
    assert [m for m, _ in _heard(direct)] == [
        *["notifications/progress"] * 3,
        *["notifications/message"] * 3,
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
        "notifications/resources/updated",
    ]


def test_two_clients_at_once_keep_their_own_log_level_and_get_only_their_own_server_requests(
    tmp_path: Path, db_path: Path
) -> None:
    """Each client session has an upstream session of its own: a log level one client sets never silences the
    other, and the upstream's sampling request for one client's call is answered by that client."""
    policies = write_open_policy(tmp_path / "policies")
    with processes(tmp_path) as procs:
        proxy = http_proxy(procs, policies, db_path, "two", http_reference(procs).url)
        quiet, chatty = Agent("quiet"), Agent("chatty")
        both_listening = anyio.Event()
        ready: list[str] = []

        def work(level: types.LoggingLevel) -> Any:
            async def go(client: ClientSession) -> list[str]:
                await set_level(client, level)
                ready.append(level)
                if len(ready) == 2:
                    both_listening.set()
                await both_listening.wait()  # both levels are set before either client logs
                answer = _texts(await client.call_tool("test_sampling", {"prompt": "who?"}))
                await client.call_tool("test_log_levels", {})
                await client.send_ping()
                return [answer]

            return go

        async def main() -> list[Any]:
            out: dict[str, Any] = {}
            async with anyio.create_task_group() as group:

                async def one(agent: Agent, level: types.LoggingLevel) -> None:
                    out[agent.name] = await as_agent(proxy, agent, work(level))

                group.start_soon(one, quiet, "error")
                group.start_soon(one, chatty, "debug")
            return [out["quiet"], out["chatty"]]

        quiet_said, chatty_said = anyio.run(main)
    assert quiet_said == ["LLM response: quiet says hello"] and chatty_said == ["LLM response: chatty says hello"]
    assert quiet.asked == chatty.asked == ["sampling/createMessage"]
    levels = {
        agent.name: [n.params.level for n in agent.heard(types.LoggingMessageNotification)] for agent in (quiet, chatty)
    }
    assert levels == {
        "quiet": ["error", "critical", "alert", "emergency"],
        "chatty": ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"],
    }


def test_stateless_clients_each_get_their_own_progress_and_opted_in_logs_and_no_other_clients_server_requests(
    tmp_path: Path, db_path: Path
) -> None:
    """A 2026-era client has no session (every request stands alone), so each of its requests borrows an upstream
    session of its own while it is served: two such clients calling at once each get their own progress and only
    the log levels they opted in to, and a request the upstream makes while serving one of them (refused: that
    era forbids them) is never asked of another client, here a handshake-era client connected at the same time."""
    policies = write_open_policy(tmp_path / "policies")
    heard: dict[str, list[Any]] = {"quiet": [], "chatty": []}
    with processes(tmp_path) as procs:
        proxy = http_proxy(procs, policies, db_path, "stateless", http_reference(procs).url)
        bystander = Agent("bystander")
        all_in = anyio.Event()
        arrived: list[str] = []

        def logger(name: str) -> Any:
            async def log(params: types.LoggingMessageNotificationParams) -> None:
                heard[name].append(params.level)

            return log

        async def stateless(name: str, level: types.LoggingLevel) -> list[Any]:
            seen: list[float] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                seen.append(progress)

            async with Client(proxy.url, log_level=level, logging_callback=logger(name)) as client:
                assert client.protocol_version == "2026-07-28"
                arrived.append(name)
                if len(arrived) == 3:
                    all_in.set()
                await all_in.wait()  # both stateless clients and the bystander are connected: they call at once
                await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
                await client.call_tool("test_log_levels", {})
                asked = await client.call_tool("test_sampling", {"prompt": name})
                return [seen, asked.is_error]

        async def standing_by(client: ClientSession) -> None:
            arrived.append("bystander")
            if len(arrived) == 3:
                all_in.set()
            await all_in.wait()
            await client.send_ping()

        async def main() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with anyio.create_task_group() as group:

                async def one(name: str, level: types.LoggingLevel) -> None:
                    out[name] = await stateless(name, level)

                group.start_soon(one, "quiet", "error")
                group.start_soon(one, "chatty", "debug")
                with anyio.fail_after(60):
                    await as_agent(proxy, bystander, standing_by)
            return out

        said = anyio.run(main)
    assert said["quiet"] == said["chatty"] == [[0.0, 50.0, 100.0], True]
    assert bystander.asked == []  # the upstream's sampling requests reached no other client
    assert heard == {
        "quiet": ["error", "critical", "alert", "emergency"],
        "chatty": ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"],
    }
