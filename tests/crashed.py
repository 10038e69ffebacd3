"""What a crashed worker leaves in the ledger, for the tests of recovery, leases and operator actions."""

from __future__ import annotations

import subprocess
import sys

from guard import args_hash
from guard.canonical import canonical_json
from guard.ledger import CallRequest, Ledger, new_id

__all__ = ["dead_pid", "left_started"]


def left_started(
    ledger: Ledger,
    run_id: str,
    tool: str,
    side_effect: str,
    args: dict[str, object],
    *,
    ttl: float = 0.0,
    team: str = "ops",
    worker: str = "dead",
    key: str | None = None,
    rule: str | None = None,
) -> str:
    """What a worker that died right after `started` committed leaves behind: the run (opened when new) and its call
    `started`, held by `worker` with a lease of `ttl` seconds (lease token 1); returns the call id. The idempotency
    key is `key`, or `k:<call id>`."""
    ledger.open_run(run_id, team, actor="agent")
    call_id = new_id("call")
    offer = ledger.offer(
        CallRequest(
            call_id=call_id,
            run_id=run_id,
            team=team,
            tool=tool,
            args_json=canonical_json(args).decode(),
            args_hash=args_hash(args),
            idempotency_key=key or f"k:{call_id}",
            verdict="allow",
            side_effect=side_effect,
            rule=rule,
            reason="",
            policy_version="v",
            actor="agent",
            worker=worker,
            lease_ttl=ttl,
        )
    )
    assert offer.kind == "started"
    return call_id


def dead_pid() -> int:
    """The id of a process that ran on this host and has exited (a worker known dead)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
