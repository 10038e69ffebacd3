"""The proxy's run and the client's connections: an event's run outlives a client that comes and goes, a finished
run says what to do, and a replay into a stopped run is answered with a tool error, never a crash."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters
from mcp_world import (
    SERVER,
    call,
    effects,
    ledger_calls,
    outcome,
    proxy_args,
    server_env,
    session,
    stdio_proxy,
    text,
    write_policy,
)

from guard import Guard

ANN = {"email": "ann@acme.io", "name": "Ann"}
BO = {"email": "bo@acme.io", "name": "Bo"}


def _run_state(policies: Path, db: str, run_id: str) -> str:
    with Guard(policies=policies, db=db, log_level="error") as guard:
        run = guard.ledger.get_run(run_id)
        assert run is not None
        return run.state


def test_a_client_that_only_listed_tools_leaves_the_events_run_open_for_the_next_connection(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(policies, ledger_url, log, "lead-7")

    async def list_only(client: ClientSession) -> set[str]:
        return {t.name for t in (await client.list_tools()).tools}

    assert "upsert_contact" in session(proxy, list_only)
    assert _run_state(policies, ledger_url, "crm:lead-7") == "running"
    first = call(proxy, "upsert_contact", ANN)  # the next connection for the same event
    second = call(proxy, "upsert_contact", BO)  # and another: the run is still the event's
    assert not first.is_error and not second.is_error, (text(first), text(second))
    assert [e["email"] for e in effects(log)] == ["ann@acme.io", "bo@acme.io"]
    assert _run_state(policies, ledger_url, "crm:lead-7") == "running"


def test_a_run_completed_on_exit_refuses_new_calls_and_says_to_start_a_new_event(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(policies, ledger_url, log, "lead-8", "--on-exit", "complete")
    assert not call(proxy, "upsert_contact", ANN).is_error
    assert _run_state(policies, ledger_url, "crm:lead-8") == "completed"
    again = call(proxy, "upsert_contact", ANN)  # what it already did: the recorded result
    refused = call(proxy, "upsert_contact", BO)  # new work in a finished run
    assert not again.is_error and again.structured_content == {"contact_id": "c-ann"}
    assert outcome(refused)["outcome"] == "RunNotRunning"
    assert "--event" in text(refused) and "completed" in text(refused)
    assert [e["email"] for e in effects(log)] == ["ann@acme.io"]


def test_a_replay_of_the_event_into_a_stopped_run_is_answered_with_a_tool_error_not_a_crash(
    tmp_path: Path, ledger_url: str
) -> None:
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    proxy = stdio_proxy(policies, ledger_url, log, "lead-9")
    failed = call(proxy, "provision_account", {"customer": "acme", "plan": "broken"})
    assert outcome(failed)["outcome"] == "CallFailed"
    stopped = _run_state(policies, ledger_url, "crm:lead-9")
    assert stopped not in ("running", "completed")

    async def replay(client: ClientSession) -> list[Any]:
        listed = await client.list_tools()
        return [listed, await client.call_tool("upsert_contact", ANN)]

    listed, refused = session(proxy, replay)  # the same event delivered again
    assert listed.tools
    assert outcome(refused)["outcome"] == "RunNotRunning" and outcome(refused)["run_id"] == "crm:lead-9"
    assert "nothing ran" in text(refused) and stopped in text(refused) and "guard runs show" in text(refused)
    assert effects(log) == []
    assert ledger_calls(policies, ledger_url, "crm:lead-9") == [("provision_account", "failed")]


def test_a_run_completed_on_exit_is_completed_even_when_its_upstream_server_is_slow_to_stop(
    tmp_path: Path, ledger_url: str
) -> None:
    """The client of a stdio proxy closes the proxy's stdin, waits two seconds (the SDK's grace period), then kills
    it; closing the upstream sessions may take that long (an upstream server that lingers after its stdin closes,
    or a loaded machine). The run is completed the moment the client is gone, before any upstream session is
    closed, so the client's kill never costs the run its `completed`."""
    policies = write_policy(tmp_path / "policies")
    log = tmp_path / "effects.jsonl"
    lingering = ["--", "sh", "-c", '"$0" "$1"; exec sleep 30', sys.executable, str(SERVER)]  # exits 30 s late
    args = [*proxy_args(policies, ledger_url, "lead-10", "--on-exit", "complete"), *lingering]
    proxy = StdioServerParameters(command=sys.executable, args=args, env=server_env(log))
    assert not call(proxy, "upsert_contact", ANN).is_error
    assert _run_state(policies, ledger_url, "crm:lead-10") == "completed"
