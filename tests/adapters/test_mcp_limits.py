"""The proxy's bound on the upstream sessions it holds open for clients (`--max-sessions`, `guard_mcp/places.py`),
seen from the upstream's side: the reference server over stdio (one process per session) notes each process it
starts and ends in a file (`REFERENCE_SESSIONS`), so the tests count the upstream's own sessions, not the proxy's
counter. The proxy runs as `python -m guard_mcp --serve http`, its clients are the `mcp` SDK's `Client`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from guard_mcp.__main__ import main as guard_mcp_main
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_limits_world import SIMPLE, assert_limit_error, limited_proxy, texts, until
from mcp_reference_world import REFERENCE
from mcp_world import processes

CLOCK_1, CLOCK_2 = "test://clock/1", "test://clock/2"


def test_concurrent_2026_requests_never_open_more_upstream_sessions_than_the_bound_and_the_rest_get_its_error(
    tmp_path: Path,
) -> None:
    """Six concurrent calls of a 2026-era client against a bound of 2: two run (two upstream processes, never
    more), the other four are answered with the limit's JSON-RPC error after the short wait, and once the two
    have answered a later call succeeds."""
    with processes(tmp_path) as procs:
        proxy, upstream, gate = limited_proxy(procs, tmp_path, "flood", "--max-sessions", "2", "--session-wait", "0.5")

        async def main() -> tuple[list[MCPError], list[str], str]:
            refused: list[MCPError] = []
            answered: list[str] = []
            four_refused = anyio.Event()
            async with Client(proxy.url) as client:

                async def one() -> None:
                    try:
                        answered.append(texts(await client.call_tool("test_hold", {})))
                    except MCPError as exc:
                        refused.append(exc)
                        if len(refused) == 4:
                            four_refused.set()

                async with anyio.create_task_group() as group:
                    for _ in range(6):
                        group.start_soon(one)
                    with anyio.fail_after(30):
                        await four_refused.wait()
                    gate.touch()
                later = texts(await client.call_tool("test_simple_text", {}))
            return refused, answered, later

        refused, answered, later = anyio.run(main)
        peak = upstream.peak()
    assert len(refused) == 4
    for exc in refused:
        assert_limit_error(exc, 2)
    assert answered == ["released", "released"]
    assert later == SIMPLE
    assert peak == 2


def test_a_listen_over_the_bound_is_refused_with_its_error_and_a_closed_one_gives_its_place_back(
    tmp_path: Path,
) -> None:
    """Two listen streams hold both places of a bound of 2 (the pool's idle session is closed to make room); a
    third listen and a call are refused with the limit's error; once a stream closes, its upstream process ends
    and a call succeeds again."""
    with processes(tmp_path) as procs:
        proxy, upstream, _ = limited_proxy(procs, tmp_path, "listens", "--max-sessions", "2", "--session-wait", "0.5")

        async def main() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with Client(proxy.url) as client:
                out["first"] = texts(await client.call_tool("test_simple_text", {}))  # leaves an idle session
                async with client.listen(resource_subscriptions=[CLOCK_1]):
                    async with client.listen(resource_subscriptions=[CLOCK_2]):
                        out["live with two listens"] = upstream.live()
                        with pytest.raises(MCPError) as listen_refused:
                            async with client.listen(tools_list_changed=True):
                                pass
                        with pytest.raises(MCPError) as call_refused:
                            await client.call_tool("test_simple_text", {})
                        out["refused"] = [listen_refused.value, call_refused.value]
                    await until("the closed listen's upstream process ended", lambda: upstream.live() == 1)
                    out["later"] = texts(await client.call_tool("test_simple_text", {}))
            return out

        out = anyio.run(main)
        peak = upstream.peak()
    assert out["first"] == out["later"] == SIMPLE
    assert out["live with two listens"] == 2
    for exc in out["refused"]:
        assert_limit_error(exc, 2)
    assert peak == 2


def test_handshake_era_connections_each_hold_a_place_and_one_over_the_bound_is_refused_until_one_closes(
    tmp_path: Path,
) -> None:
    """Each handshake-era client connection holds an upstream session for its life: with a bound of 2, a third
    connection's request is refused with the limit's error; after one of the two disconnects (its upstream process
    ended), the third connection's next request is served."""
    with processes(tmp_path) as procs:
        proxy, upstream, _ = limited_proxy(procs, tmp_path, "legacy", "--max-sessions", "2", "--session-wait", "0.5")

        async def main() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with Client(proxy.url, mode="legacy") as third:
                async with Client(proxy.url, mode="legacy") as first:
                    out["first"] = texts(await first.call_tool("test_simple_text", {}))
                    async with Client(proxy.url, mode="legacy") as second:
                        out["second"] = texts(await second.call_tool("test_simple_text", {}))
                        out["live"] = upstream.live()
                        with pytest.raises(MCPError) as refused:
                            await third.call_tool("test_simple_text", {})
                        out["refused"] = refused.value
                await until("the two connections' upstream processes ended", lambda: upstream.live() == 0)
                out["third"] = texts(await third.call_tool("test_simple_text", {}))
            return out

        out = anyio.run(main)
        peak = upstream.peak()
    assert out["first"] == out["second"] == out["third"] == SIMPLE
    assert out["live"] == 2
    assert_limit_error(out["refused"], 2)
    assert peak == 2


@pytest.mark.parametrize("ending", ["cancelled", "timed out"])
def test_a_request_cancelled_or_timed_out_upstream_gives_its_place_back(tmp_path: Path, ending: str) -> None:
    """With a bound of 1, a call that the client cancels, or that gets no answer within --call-timeout, closes its
    upstream session (its process ends) and gives the one place back: the next call is served, not refused."""
    timeout = ["--call-timeout", "1"] if ending == "timed out" else []
    with processes(tmp_path) as procs:
        proxy, upstream, _ = limited_proxy(
            procs, tmp_path, "ends", "--max-sessions", "1", "--session-wait", "0.5", *timeout
        )

        async def main() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with Client(proxy.url) as client:
                running = anyio.Event()

                async def started(progress: float, total: float | None, message: str | None) -> None:
                    running.set()

                async with anyio.create_task_group() as group:

                    async def hold() -> None:
                        out["held"] = await client.call_tool("test_hold", {}, progress_callback=started)

                    group.start_soon(hold)
                    with anyio.fail_after(30):
                        await running.wait()
                    out["live while running"] = upstream.live()
                    if ending == "cancelled":
                        group.cancel_scope.cancel()  # the SDK client sends notifications/cancelled
                await until("the request's upstream process ended", lambda: upstream.live() == 0)
                out["next"] = texts(await client.call_tool("test_simple_text", {}))
            return out

        out = anyio.run(main)
    assert out["live while running"] == 1
    if ending == "cancelled":
        assert "held" not in out
    else:
        assert out["held"].is_error and "no answer" in texts(out["held"])
    assert out["next"] == SIMPLE


@pytest.mark.parametrize(
    ("option", "value"), [("--max-sessions", "0"), ("--session-wait", "-1"), ("--session-idle", "0")]
)
def test_the_command_line_refuses_a_bound_that_serves_nothing(option: str, value: str) -> None:
    """`--max-sessions 0`, a negative `--session-wait` or a `--session-idle` of 0 is a usage error before anything
    starts."""
    with pytest.raises(SystemExit) as exited:
        guard_mcp_main(["--team", "ref", option, value, "--", sys.executable, str(REFERENCE)])
    assert exited.value.code == 2


def test_the_help_names_each_session_option_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` shows `--max-sessions`, `--session-wait` and `--session-idle` with their defaults (64, 5, 60)."""
    with pytest.raises(SystemExit) as exited:
        guard_mcp_main(["--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for option, default in (("--max-sessions", "64"), ("--session-wait", "5.0"), ("--session-idle", "60.0")):
        after = shown.rsplit(f"{option} ", 1)[1]  # its line in the options, not the usage
        assert f"(default: {default})" in after.split(" --", 1)[0], option
