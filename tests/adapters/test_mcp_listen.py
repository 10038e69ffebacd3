"""`subscriptions/listen` (the 2026-07-28 era) through the proxy, with the `mcp` SDK's own `Client` in its default
mode: the client's stream is the upstream's own listen stream relayed, on an upstream session of its own
(`guard_mcp/listen.py`); it gets the filter the upstream honored and the events the upstream sent it, only its own,
and it ends with the client, closing its upstream session.

The reference server (`mcp_reference_server.py`) announces list changes and `test_update_resource` on its bus, and
its clocks `test://clock/1` and `test://clock/2` announce an update every tick: events that start in the upstream
process itself, which a listen on a stdio upstream (a process of its own per listen) hears too.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import mcp_types as types
import pytest
import uvicorn
from guard_mcp import GuardProxy, HttpUpstream, Upstream, connect
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.subscriptions import ResourceUpdated, ServerEvent, Subscription, SubscriptionLost, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp_reference_world import REFERENCE, env, http_proxy, http_reference, subscribe, write_open_policy
from mcp_world import SERVER, processes, server_env, stdio_proxy, write_policy

from guard import Guard
from guard.testing import poll

WATCHED = "test://watched-resource"
CLOCK_1, CLOCK_2 = "test://clock/1", "test://clock/2"
Target = str | StdioServerParameters  # a streamable HTTP URL, or a stdio server the client starts


async def events(sub: Subscription, until: Callable[[list[ServerEvent]], bool]) -> list[ServerEvent]:
    """The stream's events, in order, up to the first point where `until` holds of them."""
    seen: list[ServerEvent] = []
    with anyio.fail_after(30):
        async for event in sub:
            seen.append(event)
            if until(seen):
                return seen
    raise AssertionError(f"the stream ended after {seen}")


def _reached(uri: str) -> Callable[[list[ServerEvent]], bool]:
    return lambda seen: ResourceUpdated(uri=uri) in seen


def _texts(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _changes_made_by_the_client(target: Target) -> tuple[Any, Any, list[ServerEvent]]:
    """Listen for tool list changes and one resource, then change the tool list and that resource (and, unasked
    for, the prompt and resource lists): the change flags announced, the honored filter and the stream up to the
    resource's update."""
    async with Client(target) as client:
        assert client.protocol_version == "2026-07-28"
        caps = client.server_capabilities
        announced = caps.model_dump(include={"tools", "prompts", "resources"}, exclude_none=True)
        async with client.listen(tools_list_changed=True, resource_subscriptions=[WATCHED]) as sub:
            await client.call_tool("test_list_changed", {})
            await client.call_tool("test_update_resource", {"uri": WATCHED})
            return announced, sub.honored, await events(sub, _reached(WATCHED))


async def _clock(target: Target) -> tuple[Any, list[ServerEvent]]:
    """Listen for one clock (and tool list changes): the honored filter and the stream's first three events."""
    async with (
        Client(target) as client,
        client.listen(tools_list_changed=True, resource_subscriptions=[CLOCK_1]) as sub,
    ):
        return sub.honored, await events(sub, lambda seen: len(seen) == 3)


def test_a_listen_through_the_proxy_gets_the_filter_and_the_events_the_upstream_gives_it_directly(
    tmp_path: Path, db_path: Path
) -> None:
    """Over an HTTP upstream (one process behind every session): the proxy announces the change flags the upstream
    does, the tool list change and the resource update a client's own calls cause reach its listen stream as they
    do directly, and the list changes it did not ask for do not; the honored filter is the upstream's."""
    policies = write_open_policy(tmp_path / "policies")
    with processes(tmp_path) as procs:
        reference = http_reference(procs)
        plain = anyio.run(_changes_made_by_the_client, reference.url)
        proxy = http_proxy(procs, policies, db_path, "listen-http", reference.url)
        through = anyio.run(_changes_made_by_the_client, proxy.url)
    assert through == plain
    announced, honored, seen = plain
    assert announced["tools"]["list_changed"] is True and announced["resources"]["subscribe"] is True
    assert honored.tools_list_changed is True and honored.resource_subscriptions == [WATCHED]
    assert seen == [ToolsListChanged(), ResourceUpdated(uri=WATCHED)]


@pytest.mark.parametrize("upstream", ["http", "stdio"])
def test_a_listen_through_the_proxy_hears_the_upstreams_own_updates_with_either_upstream(
    tmp_path: Path, db_path: Path, upstream: str
) -> None:
    """Updates that start in the upstream (a clock) reach the listen through the proxy as they reach it directly,
    only for the URI it asked for, whether the upstream is served over streamable HTTP or started over stdio."""
    policies = write_open_policy(tmp_path / "policies")
    with processes(tmp_path) as procs:
        reference = http_reference(procs)
        plain = anyio.run(_clock, reference.url)
        proxy = http_proxy(
            procs, policies, db_path, f"clock-{upstream}", reference.url if upstream == "http" else upstream
        )
        through = anyio.run(_clock, proxy.url)
    assert through == plain
    honored, seen = plain
    assert honored.tools_list_changed is True and honored.resource_subscriptions == [CLOCK_1]
    assert seen == [ResourceUpdated(uri=CLOCK_1)] * 3


@pytest.mark.parametrize("upstream", ["http", "stdio"])
def test_two_clients_listening_through_the_proxy_at_once_each_get_only_what_they_asked_for(
    tmp_path: Path, db_path: Path, upstream: str
) -> None:
    """Two 2026-era clients listen at once, one to each clock; every event each gets is its own clock's."""
    policies = write_open_policy(tmp_path / "policies")
    with processes(tmp_path) as procs:
        behind = http_reference(procs).url if upstream == "http" else upstream
        proxy = http_proxy(procs, policies, db_path, f"two-{upstream}", behind)
        both = anyio.Event()
        listening: list[str] = []

        async def one(uri: str) -> list[ServerEvent]:
            async with Client(proxy.url) as client, client.listen(resource_subscriptions=[uri]) as sub:
                listening.append(uri)
                if len(listening) == 2:
                    both.set()
                await both.wait()  # both streams are open before either counts its events
                return await events(sub, lambda seen: len(seen) == 4)

        async def main() -> dict[str, list[ServerEvent]]:
            out: dict[str, list[ServerEvent]] = {}
            async with anyio.create_task_group() as group:

                async def run(uri: str) -> None:
                    out[uri] = await one(uri)

                group.start_soon(run, CLOCK_1)
                group.start_soon(run, CLOCK_2)
            return out

        heard = anyio.run(main)
    assert heard == {CLOCK_1: [ResourceUpdated(uri=CLOCK_1)] * 4, CLOCK_2: [ResourceUpdated(uri=CLOCK_2)] * 4}


def test_a_handshake_era_client_has_no_listen_and_keeps_its_own_subscription_beside_a_listening_one(
    tmp_path: Path, db_path: Path
) -> None:
    """The 2025 era has no `subscriptions/listen` (the SDK's server answers it `Method not found`, as the
    upstream does directly); such a client's `resources/subscribe` still gets it its own updates, while a
    2026-era client listening to a clock at the same time gets only the clock."""
    policies = write_open_policy(tmp_path / "policies")
    with processes(tmp_path) as procs:
        proxy = http_proxy(procs, policies, db_path, "eras", http_reference(procs).url)
        subscribed, updated = anyio.Event(), anyio.Event()
        heard: list[Any] = []

        async def handshake() -> Any:
            async def note(message: Any) -> None:
                if isinstance(message, types.ResourceUpdatedNotification):
                    heard.append(str(message.params.uri))
                    if len(heard) == 2:  # on subscribing (the reference server's way), then on the update
                        updated.set()

            async with Client(proxy.url, mode="legacy", message_handler=note) as client:
                try:
                    await client.session.send_request(
                        types.SubscriptionsListenRequest(
                            params=types.SubscriptionsListenRequestParams(
                                notifications=types.SubscriptionFilter(tools_list_changed=True)
                            )
                        ),
                        types.SubscriptionsListenResult,
                    )
                    refused = None
                except MCPError as exc:
                    refused = exc.error.code
                await subscribe(client.session, WATCHED)  # the 2025 era's way
                await client.call_tool("test_update_resource", {"uri": WATCHED})
                with anyio.fail_after(30):
                    await updated.wait()  # on the client's standalone stream: no order with the call's answer
                subscribed.set()
                return refused

        async def modern() -> list[ServerEvent]:
            async with Client(proxy.url) as client, client.listen(resource_subscriptions=[CLOCK_1]) as sub:
                await subscribed.wait()  # the other client's update was announced before these are counted
                return await events(sub, lambda seen: len(seen) == 3)

        async def main() -> tuple[Any, list[ServerEvent]]:
            out: dict[str, Any] = {}
            async with anyio.create_task_group() as group:

                async def run_modern() -> None:
                    out["modern"] = await modern()

                group.start_soon(run_modern)
                out["refused"] = await handshake()
            return out["refused"], out["modern"]

        refused, clock = anyio.run(main)
    assert refused == types.METHOD_NOT_FOUND
    assert heard == [WATCHED, WATCHED]  # what its subscription asked for, on its own session
    assert clock == [ResourceUpdated(uri=CLOCK_1)] * 3


Serving = Callable[[GuardProxy, str], Awaitable[None]]


async def _served(guard: Guard, upstream: Upstream, scenario: Serving) -> None:
    """`scenario(proxy, url)` with the proxy served in this process over streamable HTTP (as `guard_mcp.serve`
    does it), so the test can read the proxy's upstream sessions."""
    async with (
        connect(upstream) as primary,
        guard.run("ref", source_event_id="in-process"),
        anyio.create_task_group() as links,
    ):
        proxy = GuardProxy(guard, primary, team="ref", upstream_spec=upstream)
        proxy.links.start(links)
        app = proxy.server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        web = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
        async with anyio.create_task_group() as group:
            group.start_soon(web.serve, [listening])
            try:
                await scenario(proxy, f"http://127.0.0.1:{listening.getsockname()[1]}/mcp")
            finally:
                web.should_exit = True
        links.cancel_scope.cancel()


async def _until(what: str, holds: Callable[[], bool]) -> None:
    """Wait until `holds()` (read in a worker thread, `guard.testing.poll`); it may call back into this loop."""
    await anyio.to_thread.run_sync(lambda: poll(holds, timeout=30, what=what, interval=0.02))


@pytest.mark.parametrize("upstream", ["http", "stdio"])
def test_a_listen_closes_with_its_client_and_leaves_no_upstream_session_open(tmp_path: Path, upstream: str) -> None:
    """While a client listens, its stream holds one upstream session of its own, outside the pool; when the client
    goes away (its stream closed), that session is closed: the proxy holds none for it, the pool is as it was, and
    the upstream has no listen stream left open."""
    policies = write_open_policy(tmp_path / "policies")
    counts: dict[str, Any] = {}

    async def open_listens(target: HttpUpstream) -> str:
        async with Client(target.url) as client:
            return _texts(await client.call_tool("test_open_listens", {}))

    with processes(tmp_path) as procs, Guard(policies=policies, db=f"sqlite:///{tmp_path / 'g.db'}") as guard:
        reference = http_reference(procs)
        behind: Upstream = (
            reference
            if upstream == "http"
            else StdioServerParameters(command=sys.executable, args=[str(REFERENCE)], env=env())
        )

        async def scenario(proxy: GuardProxy, url: str) -> None:
            async with Client(url) as client:
                await client.list_tools()  # a pooled session was lent and given back
                counts["idle before"] = proxy.links.idle
                async with client.listen(resource_subscriptions=[CLOCK_1]) as sub:
                    await events(sub, lambda seen: len(seen) == 1)
                    counts["listens while open"] = proxy.links.listens
                    counts["idle while open"] = proxy.links.idle
                    if upstream == "http":
                        counts["upstream while open"] = await open_listens(reference)
            await _until("the proxy closed the listen's upstream session", lambda: proxy.links.listens == 0)
            counts["idle after"] = proxy.links.idle
            if upstream == "http":
                await _until(
                    "the upstream's listen stream ended",
                    lambda: anyio.from_thread.run(open_listens, reference) == "0",
                )

        anyio.run(_served, guard, behind, scenario)
    assert counts["listens while open"] == 1
    assert counts["idle before"] == counts["idle while open"] == counts["idle after"] >= 1
    if upstream == "http":
        assert counts["upstream while open"] == "1"


def test_a_2026_client_is_told_the_change_flags_the_upstream_announces_in_that_era_not_its_handshake_ones(
    tmp_path: Path, ledger_url: str
) -> None:
    """The CRM test server (the SDK's `MCPServer`) announces no change notifications to a handshake-era client and
    every one to a 2026-era client (its listen streams deliver them); through the proxy each era hears the same."""
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    direct = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=server_env(log))
    proxied = stdio_proxy(policies, ledger_url, log, "flags")

    async def flags(target: Target, mode: str) -> dict[str, Any]:
        async with Client(target, mode=mode) as client:  # pyright: ignore[reportArgumentType] - a ConnectMode literal
            caps = client.server_capabilities
            return caps.model_dump(include={"tools", "prompts", "resources"}, exclude_none=True)

    async def main() -> list[dict[str, Any]]:
        return [await flags(target, mode) for mode in ("legacy", "auto") for target in (direct, proxied)]

    legacy_direct, legacy_through, modern_direct, modern_through = anyio.run(main)
    assert legacy_through == legacy_direct and legacy_direct["tools"]["list_changed"] is False
    assert modern_through == modern_direct and modern_direct["tools"]["list_changed"] is True


def test_an_upstream_that_ends_its_listen_streams_gracefully_ends_the_clients_gracefully_through_the_proxy(
    tmp_path: Path, db_path: Path
) -> None:
    """The upstream closing its listen streams (the SDK's `ListenHandler.close`, e.g. on its shutdown) ends the
    client's stream through the proxy as it ends it directly: gracefully (the iteration stops), not as a lost
    subscription."""
    policies = write_open_policy(tmp_path / "policies")

    async def ending(target: Target) -> str:
        async with Client(target) as client, client.listen(resource_subscriptions=[CLOCK_1]) as sub:
            await events(sub, lambda seen: len(seen) == 1)
            await client.call_tool("test_close_listens", {})
            try:
                with anyio.fail_after(30):
                    async for _ in sub:
                        pass
            except SubscriptionLost:
                return "lost"
            return "graceful"

    with processes(tmp_path) as procs:
        reference = http_reference(procs)
        plain = anyio.run(ending, reference.url)
        proxy = http_proxy(procs, policies, db_path, "ending", reference.url)
        through = anyio.run(ending, proxy.url)
    assert plain == through == "graceful"
