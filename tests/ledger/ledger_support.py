"""Builders for ledger tests: call requests with sensible defaults, and event-history checks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from guard.canonical import args_hash
from guard.ledger import CallRequest, EventRecord, Ledger, new_id
from guard.ledger.states import CALL_TRANSITIONS, CallState

TEAM = "ops"
AGENT = "agent"


def request(
    run_id: str,
    *,
    verdict: Literal["allow", "approve", "deny"] = "allow",
    tool: str = "crm.upsert",
    args: Mapping[str, Any] | None = None,
    key: str | None = None,
    quorum: int = 1,
    expires_after: float = 3600.0,
    roles: tuple[str, ...] = ("finance",),
    call_id: str | None = None,
) -> CallRequest:
    """An offered call as the runtime would build it, with the hash of `args` and redaction left to the caller."""
    arguments = dict(args if args is not None else {"n": 1})
    return CallRequest(
        call_id=call_id or new_id("call"),
        run_id=run_id,
        team=TEAM,
        tool=tool,
        args_json=json.dumps(arguments),
        args_hash=args_hash(arguments),
        idempotency_key=key,
        verdict=verdict,
        side_effect="compensable",
        rule="r",
        reason=f"test {verdict}",
        policy_version="sha256:test",
        actor=AGENT,
        approval_roles=roles if verdict == "approve" else (),
        quorum=quorum,
        expires_after=expires_after,
    )


def call_history(ledger: Ledger, run_id: str, call_id: str) -> list[EventRecord]:
    return [e for e in ledger.events_of(run_id) if e.call_id == call_id and e.entity == "call"]


def history_problem(events: list[EventRecord], final_state: str) -> str | None:
    """None when the events walk CALL_TRANSITIONS from `None` and end at `final_state`; else what is wrong."""
    src: CallState | None = None
    for event in events:
        for step_from, step_to in event.moves:  # a new call's first event names its whole path
            from_state = None if step_from is None else CallState(step_from)
            if from_state != src:
                return f"event {event.id} starts at {step_from}, but the call was {src}"
            dst = CallState(step_to)
            if dst not in CALL_TRANSITIONS[src]:
                return f"event {event.id} moves {src} -> {dst}, not in CALL_TRANSITIONS"
            src = dst
    if src != final_state:
        return f"the history ends at {src}, but the call row says {final_state}"
    return None
