"""Handshake-era streamable HTTP client sessions that their clients abandon (no `DELETE`) give their places under
`--max-sessions` to newcomers once idle for `--session-idle` seconds (`guard_mcp/idle.py`, `links.py`), never while
anything of theirs is in flight. The proxy runs as `python -m guard_mcp --serve http` with the reference server
behind it over stdio (one process per upstream session, counted from its own side); its clients are the `mcp`
SDK's own, the abandoned ones leaving their sessions open as the TypeScript SDK's clients often do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_limits_world import (
    SIMPLE,
    Noted,
    RawSession,
    abandoning,
    assert_limit_error,
    limited_proxy,
    next_request_status,
    texts,
    until,
)
from mcp_world import ledger_calls, processes


def test_abandoned_sessions_idle_past_session_idle_give_their_places_to_a_new_client(tmp_path: Path) -> None:
    """With a bound of 2 held by two HTTP sessions their clients abandoned, a third client is served (tools/list and
        a guarded call) instead of refused: the session idle the longest is ended (logged with its idle time, not its
        ID), the upstream never has more than 2 sessions open, the ended session's next request is answered 404 while
        the other still answers, and the ended session's client is served again in a new session (in the place the third
    client gave back, ending nobody)."""
    with processes(tmp_path) as procs:
        proxy, upstream, _ = limited_proxy(
            procs,
            tmp_path,
            "abandoned",
            *("--max-sessions", "2", "--session-wait", "30", "--session-idle", "0.2", "--log-level", "warning"),
        )
        first, second = Noted(), Noted()

        async def main() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for noted in (first, second):
                async with abandoning(proxy, noted) as gone:
                    out.setdefault("abandoned", []).append(texts(await gone.call_tool("test_simple_text", {})))
            out["live when abandoned"] = upstream.live()
            async with Client(proxy.url, mode="legacy") as third:
                out["listed"] = [tool.name for tool in (await third.list_tools()).tools]
                out["third"] = texts(await third.call_tool("test_simple_text", {}))
                out["first next"] = await next_request_status(proxy, first)
                out["second next"] = await next_request_status(proxy, second)
            await until("the third client's upstream session ended", lambda: upstream.live() == 1)
            async with Client(proxy.url, mode="legacy") as first_again:
                out["first again"] = texts(await first_again.call_tool("test_simple_text", {}))
            return out

        out = anyio.run(main)
        peak = upstream.peak()
        log = procs.log_of("proxy")
    assert out["abandoned"] == [SIMPLE, SIMPLE]
    assert out["live when abandoned"] == 2
    assert "test_simple_text" in out["listed"]
    assert out["third"] == out["first again"] == SIMPLE
    assert (out["first next"], out["second next"]) == (404, 200)
    assert peak == 2
    assert log.count("ended an idle client session") == 1, log  # not for a place already coming back
    assert "idle_seconds=" in log
    assert first.session_id is not None and first.session_id not in log


def test_an_abandoned_session_idle_less_than_session_idle_keeps_its_place(tmp_path: Path) -> None:
    """With a bound of 2 held by two abandoned HTTP sessions and `--session-idle 3600`, a third client is refused
    with the limit's error after `--session-wait`: a session idle for less than that is never ended, and both
    still answer their clients."""
    with processes(tmp_path) as procs:
        proxy, upstream, _ = limited_proxy(
            procs,
            tmp_path,
            "recent",
            *("--max-sessions", "2", "--session-wait", "1", "--session-idle", "3600"),
        )
        first, second = Noted(), Noted()

        async def main() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for noted in (first, second):
                async with abandoning(proxy, noted) as gone:
                    await gone.call_tool("test_simple_text", {})
            async with Client(proxy.url, mode="legacy") as third:
                with pytest.raises(MCPError) as refused:
                    await third.call_tool("test_simple_text", {})
                out["refused"] = refused.value
            out["next"] = [await next_request_status(proxy, noted) for noted in (first, second)]
            return out

        out = anyio.run(main)
        peak = upstream.peak()
    assert_limit_error(out["refused"], 2)
    assert out["next"] == [200, 200]
    assert peak == 2


def test_a_session_with_a_call_in_flight_is_never_ended_and_its_call_completes_once(tmp_path: Path) -> None:
    """With a bound of 1 and `--session-idle 0.05`, a session whose guarded call is running upstream (held on a gate
    the test opens) keeps its place: a newcomer is refused with the limit's error, the call answers and is recorded
    completed once; after its client abandons the session, the newcomer's next request takes its place."""
    with processes(tmp_path) as procs:
        proxy, upstream, gate = limited_proxy(
            procs,
            tmp_path,
            "inflight",
            *("--max-sessions", "1", "--session-wait", "1", "--session-idle", "0.05"),
        )
        holder = Noted()

        async def main() -> dict[str, Any]:
            out: dict[str, Any] = {}
            running = anyio.Event()

            async def started(progress: float, total: float | None, message: str | None) -> None:
                running.set()

            async with Client(proxy.url, mode="legacy") as newcomer:
                async with abandoning(proxy, holder) as held, anyio.create_task_group() as group:

                    async def hold() -> None:
                        out["held"] = texts(await held.call_tool("test_hold", {}, progress_callback=started))

                    group.start_soon(hold)
                    with anyio.fail_after(30):
                        await running.wait()
                    with pytest.raises(MCPError) as refused:
                        await newcomer.call_tool("test_simple_text", {})
                    out["refused"] = refused.value
                    out["live while refused"] = upstream.live()
                    gate.touch()
                out["newcomer"] = texts(await newcomer.call_tool("test_simple_text", {}))
            out["holder next"] = await next_request_status(proxy, holder)
            return out

        out = anyio.run(main)
        peak = upstream.peak()
    assert_limit_error(out["refused"], 1)
    assert out["live while refused"] == 1
    assert out["held"] == "released"
    assert out["newcomer"] == SIMPLE
    assert out["holder next"] == 404
    assert peak == 1
    calls = ledger_calls(tmp_path / "policies", f"sqlite:///{tmp_path / 'guard.db'}", "ref:inflight")
    assert [c for c in calls if c[0] == "test_hold"] == [("test_hold", "completed")]


def test_a_call_whose_client_hung_up_keeps_its_session_until_it_completes_once(tmp_path: Path) -> None:
    """With a bound of 1 and `--session-idle 0.05`, a client that sent a guarded call and hung up while it ran upstream
    (no HTTP request of its session in flight any more) keeps its place while the proxy serves the call: a newcomer
    is refused with the limit's error; once the call is recorded completed (once), the newcomer's next request ends
    the session, and the hung-up session's next request is answered 404."""
    with processes(tmp_path) as procs:
        proxy, upstream, gate = limited_proxy(
            procs,
            tmp_path,
            "hungup",
            *("--max-sessions", "1", "--session-wait", "1", "--session-idle", "0.05"),
        )
        policies, db = tmp_path / "policies", f"sqlite:///{tmp_path / 'guard.db'}"

        def held_calls() -> list[tuple[str, str]]:
            return [c for c in ledger_calls(policies, db, "ref:hungup") if c[0] == "test_hold"]

        async def main() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with httpx2.AsyncClient(timeout=30) as http:
                hung_up = RawSession(proxy, http)
                await hung_up.open()
                await hung_up.call_and_hang_up("test_hold")
            async with Client(proxy.url, mode="legacy") as newcomer:
                with pytest.raises(MCPError) as refused:
                    await newcomer.call_tool("test_simple_text", {})
                out["refused"] = refused.value
                out["while running"] = held_calls()
                gate.touch()
                await until("the held call recorded completed", lambda: held_calls() == [("test_hold", "completed")])
                out["newcomer"] = texts(await newcomer.call_tool("test_simple_text", {}))
                out["hung up next"] = await next_request_status(proxy, hung_up.noted)
            return out

        out = anyio.run(main)
        peak = upstream.peak()
        calls = held_calls()
    assert_limit_error(out["refused"], 1)
    assert out["while running"] == [("test_hold", "started")]
    assert out["newcomer"] == SIMPLE
    assert out["hung up next"] == 404
    assert calls == [("test_hold", "completed")]
    assert peak == 1
