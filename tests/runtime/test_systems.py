"""A policy's `systems:` reach the call path: the runtime retries a tool as many times as its system says, whichever
rule decided the call (on each backend, sync and async)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from runtime_support import Driver, Recorder

from guard import CallFailed, Guard

SHOP = """\
team: shop
systems:
  crm:
    tools: ["crm.*"]
    retry: {attempts: 2, backoff: {initial: 1ms, max: 1ms, multiplier: 1}}
rules:
  - name: crm-reads
    tools: ["crm.get_*"]
    class: read
  - name: crm-upserts
    tools: [crm.upsert_contact]
    class: idempotent
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "shop.yaml").write_text(SHOP)
    return folder


@pytest.mark.parametrize("tool_name", ["crm.get_contact", "crm.upsert_contact"])
def test_each_tool_of_a_system_is_tried_exactly_the_systems_attempts_whichever_rule_decides(
    driver: Driver, make_guard: Callable[..., Guard], tool_name: str
) -> None:
    guard = make_guard()
    body = Recorder(errors=[ConnectionError(f"reset {i}") for i in range(1, 5)])
    tool = driver.tool(guard, body, name=tool_name)
    with driver.run(guard, "shop") as run, pytest.raises(CallFailed):
        run.call(tool, contact_id="c1")
    assert len(body.calls) == 2  # the class alone would have given 3
    [call] = guard.ledger.calls_of(run.run_id)
    assert (call.state, call.attempts) == ("failed", 2)
