"""The three numbers, read from a real ledger (both backends) after real guarded calls: pause rate by step, retry
success after a first failure, time from a failure to clean completion, approval wait; and the same figures in
`guard report` and as Prometheus metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from guard import ApprovalPending, CallFailed, Guard
from guard.cli.app import app as cli
from guard.ledger import Ledger
from guard.ledger.numbers import health_numbers
from guard.server.health import HealthCollector

POLICY = """\
team: lab
reviewers: {alice: [ops]}
rules:
  - name: reads
    tools: [lab.read]
    class: read
    retry: {attempts: 3, backoff: {initial: 1ms, max: 1ms, multiplier: 1}}
  - {name: write, tools: [lab.write], class: compensable}
  - {name: unwrite, tools: [lab.unwrite], class: idempotent}
  - {name: step, tools: [lab.step], class: compensable, on_failure: compensate}
  - {name: send, tools: [lab.send], class: irreversible, approval: {roles: [ops]}}
"""


@pytest.fixture
def lab(ledger: Ledger, tmp_path: Path, ledger_url: str) -> Ledger:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "lab.yaml").write_text(POLICY)
    guard = Guard(policies=tmp_path / "policies", db=ledger_url, approval="defer", log_level="error")
    tries: list[int] = []

    def read() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("first try fails")
        return "ok"

    def step() -> None:
        raise RuntimeError("provisioning is down")

    reader = guard.tool(read, name="lab.read")
    writer = guard.tool(lambda: {"id": "w1"}, name="lab.write")
    writer.compensation(name="lab.unwrite")(lambda _ctx: None)
    stepper = guard.tool(step, name="lab.step")
    sender = guard.tool(lambda: "sent", name="lab.send")
    with guard.run("lab", run_id="r-ok"):
        reader()
    with pytest.raises(CallFailed), guard.run("lab", run_id="r-saga"):
        writer()
        stepper()
    with pytest.raises(ApprovalPending), guard.run("lab", run_id="r-wait"):
        sender()
    pending = guard.ledger.list_approvals(team="lab")[0]
    ledger.decide(pending.approval_id, reviewer="alice", decision="approve", reviewer_roles=frozenset({"ops"}))
    guard.close()
    return Ledger(ledger_url)


def _tool(data: dict[str, Any], tool: str) -> dict[str, Any]:
    return next(t for t in data["tools"] if t["tool"] == tool)


def test_the_numbers_count_pauses_retries_failures_to_clean_ends_and_approval_waits(lab: Ledger) -> None:
    data = health_numbers(lab.conns, time.time() - 3600).to_json()
    assert (_tool(data, "lab.read")["retried"], _tool(data, "lab.read")["retry_success"]) == (1, 1.0)
    assert (_tool(data, "lab.send")["paused"], _tool(data, "lab.send")["pause_rate"]) == (1, 1.0)
    assert _tool(data, "lab.write")["pause_rate"] == 0.0
    assert len(_tool(data, "lab.step")["fail_to_clean_seconds"]) == 1  # the saga rolled the run back cleanly
    assert len(_tool(data, "lab.send")["approval_wait_seconds"]) == 1
    assert health_numbers(lab.conns, time.time() + 60).to_json()["tools"] == []
    lab.close()


@pytest.mark.sqlite_only  # any CLI command on a PostgreSQL URL leaves a psycopg connection open (runs list too)
def test_guard_report_and_the_prometheus_metrics_show_the_same_numbers(lab: Ledger, ledger_url: str) -> None:
    out = CliRunner().invoke(cli, ["report", "--since", "1h", "--db", ledger_url, "--json"])
    assert out.exit_code == 0, out.output
    assert _tool(json.loads(out.output), "lab.send")["pause_rate"] == 1.0
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(lab))
    text = generate_latest(registry).decode()
    assert 'guard_pause_rate{team="lab",tool="lab.send"} 1.0' in text
    assert 'guard_retry_success_ratio{team="lab",tool="lab.read"} 1.0' in text
    assert 'guard_failure_to_clean_seconds_count{team="lab",tool="lab.step"} 1.0' in text
    assert 'guard_approval_wait_seconds_bucket{le="+Inf",team="lab",tool="lab.send"} 1.0' in text
    lab.close()
