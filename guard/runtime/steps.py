"""The guarded call path as small steps, each taking one frozen input.

classify -> request (hash, redact, key) -> ledger.offer (brakes, record `offered`, dedupe, gate, `started`)
-> [wait for a decision] -> run the tool (`execute.py`) -> record `completed` or `failed`.
Sync and async callers share every step here; only waiting and running the tool differ (`driver.py`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from guard.canonical import args_hash, canonical_json, redact, restore_secrets, scrub, to_json
from guard.errors import (
    ApprovalExpired,
    CallDenied,
    CallRejected,
    RunNotRunning,
)
from guard.ledger import CallRequest, CallState, Ledger, Offer, new_id
from guard.policy import Decision, SideEffectClass, Verdict
from guard.runtime.context import RunScope
from guard.runtime.hooks import ToolHooks

__all__ = ["CallInput", "Prepared", "ToolSpec", "as_approved", "decision_outcome", "error_text", "extract_ids",
           "prepare", "record_success"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as Guard knows it: its name in the policy, the function, and how to read its result."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    external_ids: Mapping[str, str] = field(default_factory=dict[str, str])  # kind -> result field
    key: Callable[[Mapping[str, Any]], str] | None = None  # idempotency key from the arguments
    hooks: ToolHooks = field(default_factory=ToolHooks)  # compensation, reconcile, verify (set by decorators)


class CallInput(NamedTuple):
    """One guarded call as the agent made it."""

    run: RunScope
    tool: ToolSpec
    args: Mapping[str, Any]
    key: str | None = None
    call_id: str | None = None
    compensates: str | None = None  # the call this one compensates


class Prepared(NamedTuple):
    """A call after the ledger's first commit: the policy's decision, the request and what the ledger did."""

    input: CallInput
    decision: Decision
    request: CallRequest
    offer: Offer


def prepare(ledger: Ledger, decision: Decision, inp: CallInput, worker: str, lease_ttl: float) -> Prepared:
    """Build the ledger request from the decision and offer it (one commit)."""
    redacted = redact(inp.args, decision.secret_fields)
    refusal: str | None = None
    try:
        canonical = canonical_json(inp.args)
    except TypeError as exc:
        # No exact hash means no approval could bind to these arguments: refuse (recorded), never run.
        refusal = (f"the arguments cannot be hashed exactly ({exc}); send finite numbers, integers within "
                   "+/-2**53, strings, booleans, lists and objects")
        canonical = to_json(redacted).encode()
    digest = ("sha256:" if refusal is None else "invalid:") + hashlib.sha256(canonical).hexdigest()
    # Without secrets the canonical text is what we store: one serialisation instead of two.
    args_json = canonical.decode() if redacted is inp.args else to_json(redacted)
    key = inp.key or (inp.tool.key(inp.args) if inp.tool.key is not None else None)
    if key is None and (decision.side_effect is not SideEffectClass.READ or decision.verdict is Verdict.APPROVE):
        # The same tool with the same arguments in the same run is the same action: never run it twice.
        # Hashed to a short, fixed length: it is indexed, and handed on to other systems as their key.
        key = "auto:" + hashlib.sha256(f"{inp.run.run_id}\x1f{inp.tool.name}\x1f{digest}".encode()).hexdigest()[:32]
    approval = decision.approval
    request = CallRequest(
        call_id=inp.call_id or new_id("call"),
        run_id=inp.run.run_id,
        team=inp.run.team,
        tool=inp.tool.name,
        args_json=args_json,
        args_hash=digest,
        idempotency_key=key,
        verdict=decision.verdict.value,
        side_effect=decision.side_effect.value if decision.side_effect is not None else None,
        rule=decision.rule,
        reason=decision.reason,
        policy_version=decision.policy_version,
        actor=inp.run.actor,
        approval_roles=approval.roles if approval is not None else (),
        quorum=approval.quorum if approval is not None else 1,
        expires_after=approval.expires_after if approval is not None else 3600.0,
        compensates_call_id=inp.compensates,
        worker=worker,
        lease_ttl=lease_ttl,
        stop_repeats=decision.stop.repeats,
        stop_limits=decision.stop.max_calls,
        stop_rates=decision.stop.rate,
    )
    if refusal is not None:
        request = request._replace(verdict="deny", reason=refusal, idempotency_key=None)
    return Prepared(inp, decision, request, ledger.offer(request))


def as_approved(p: Prepared) -> Prepared | None:
    """The call with the arguments its approval binds to: a reviewer's edit replaces the agent's arguments
    (secret fields keep the agent's values). None when the edit cannot be applied exactly: the caller fails
    the call closed, it never runs the agent's arguments in place of the approved ones."""
    if p.offer.edited_args is None:
        return p
    edited: Any = json.loads(p.offer.edited_args)
    args = restore_secrets(edited, p.input.args, p.decision.secret_fields)
    try:
        exact = args_hash(redact(args, p.decision.secret_fields)) == p.offer.edited_hash
    except TypeError:
        exact = False
    return p._replace(input=p.input._replace(args=args)) if exact else None


def _ids(p: Prepared) -> dict[str, Any]:
    return {"run_id": p.request.run_id, "call_id": p.offer.call_id, "tool": p.request.tool}


def decision_outcome(p: Prepared, state: str, reason: str) -> Exception:
    """The typed error for a call that ended without running (denied, rejected, expired, closed run)."""
    ids = _ids(p)
    if state == CallState.REJECTED:
        return CallRejected(f"{p.request.tool} was rejected: {reason}", state=state, reason=reason, **ids)
    if state == CallState.EXPIRED:
        return ApprovalExpired(f"{p.request.tool}: nobody approved it before the approval expired; nothing ran",
                               state=state, reason=reason, **ids)
    if p.offer.brake == "run":
        return RunNotRunning(reason, state=state, reason=reason, **ids)
    return CallDenied(f"{p.request.tool} denied: {reason}", state=state, reason=reason, rule=p.decision.rule,
                      **ids)


def extract_ids(spec: ToolSpec, result: Any, reported: dict[str, str]) -> dict[str, str]:
    """External ids: those the tool reported while running, plus the declared fields of its result."""
    ids = dict(reported)
    if spec.external_ids and isinstance(result, Mapping):
        fields = cast(Mapping[str, Any], result)
        for kind, field_name in spec.external_ids.items():
            value = fields.get(field_name)
            if value is not None:
                ids[kind] = str(value)
    return ids


def record_success(ledger: Ledger, p: Prepared, result: Any, reported: dict[str, str], attempts: int, *,
                   durability: str = "always") -> None:
    """`started -> completed` with the (redacted) result and every external id.

    `durability="by_class"` lets the commit of a repeat-safe call return without waiting for the disk (see
    `Guard(durability=...)`); every other commit waits."""
    side_effect = p.decision.side_effect
    lazy = durability == "by_class" and side_effect is not None and side_effect.repeat_safe
    ledger.complete(p.request.run_id, p.offer.call_id, token=p.offer.lease_token,
                    result_json=to_json(redact(result, p.decision.secret_fields)),
                    external_ids=extract_ids(p.input.tool, result, reported), attempts=attempts,
                    actor=p.request.actor, durable=not lazy)


def error_text(p: Prepared, exc: BaseException) -> str:
    """The error as recorded and logged: its type and message, secret argument values scrubbed out."""
    return scrub(f"{type(exc).__name__}: {exc}", p.input.args, p.decision.secret_fields)
