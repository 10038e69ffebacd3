"""The guarded call path as small steps, each taking one frozen input.

classify -> request (hash, redact, key) -> ledger.offer (brakes, record `offered`, dedupe, gate, `started`)
-> [wait for a decision] -> run the tool (`execute.py`) -> record `completed` or `failed`.
Sync and async callers share every step here; only waiting and running the tool differ (`driver.py`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NamedTuple, cast

from guard.canonical import args_hash, to_json
from guard.errors import (
    ApprovalExpired,
    ArgumentsRefused,
    CallDenied,
    CallRejected,
    RunNotRunning,
)
from guard.ledger import CallRequest, CallsPort, CallState, Offer, new_id
from guard.policy import Decision, SideEffectClass, Verdict
from guard.redaction import conceal, described, redact, restore_secrets, scrub_text, secret_texts
from guard.runtime.arguments import ArgumentRules, fingerprint
from guard.runtime.context import RunScope
from guard.runtime.hooks import ToolSpec
from guard.runtime.stop_marks import stop_marks

__all__ = [
    "CallInput",
    "Prepared",
    "ToolSpec",
    "as_approved",
    "decision_outcome",
    "error_text",
    "extract_ids",
    "prepare",
    "record_success",
    "scrub_ids",
    "stored_result",
]


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
    secrets: tuple[str, ...] = ()  # text forms of the call's secret values: scrubbed from errors and results
    limit: str | None = None  # the argument limit that refused the call ("depth", "size", "json")


def prepare(
    ledger: CallsPort, decision: Decision, inp: CallInput, worker: str, lease_ttl: float, rules: ArgumentRules
) -> Prepared:
    """Build the ledger request from the decision and offer it (one commit).

    Arguments over a limit of `rules`, or not exact JSON, are recorded denied (`ArgumentsRefused` follows).
    Raises SecretKeyMissing, before anything is recorded, when they hold secrets and no key can be had.
    """
    fp = fingerprint(inp.args, decision.secret_fields, rules, inp.tool.name)
    if fp.secrets:
        inp.run.secrets.update(fp.secrets)  # the run's own error summary is scrubbed of them too
    key = (
        None if fp.refusal is not None else (inp.key or (inp.tool.key(inp.args) if inp.tool.key is not None else None))
    )
    if (
        key is None
        and fp.refusal is None
        and (decision.side_effect is not SideEffectClass.READ or decision.verdict is Verdict.APPROVE)
    ):
        # The same tool with the same arguments in the same run is the same action: never run it twice.
        # Hashed to a short, fixed length: it is indexed, and handed on to other systems as their key. The
        # argument hash in it is keyed when there are secrets, so the key never lets a secret be guessed.
        seed = f"{inp.run.run_id}\x1f{inp.tool.name}\x1f{fp.digest}"
        key = "auto:" + hashlib.sha256(seed.encode()).hexdigest()[:32]
    approval = decision.approval
    request = CallRequest(
        call_id=inp.call_id or new_id("call"),
        run_id=inp.run.run_id,
        team=inp.run.team,
        tool=inp.tool.name,
        args_json=fp.args_json,
        args_hash=fp.digest,
        idempotency_key=key,
        verdict=decision.verdict.value if fp.refusal is None else "deny",
        side_effect=decision.side_effect.value if decision.side_effect is not None else None,
        rule=decision.rule,
        reason=decision.reason if fp.refusal is None else fp.refusal,
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
        stop_marks=stop_marks(decision, inp.tool.name, inp.args, rules) if decision.stop.fields else (),
        shadow=decision.shadow,
    )
    return Prepared(inp, decision, request, ledger.offer(request), fp.secrets, fp.limit)


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
        return ApprovalExpired(
            f"{p.request.tool}: nobody approved it before the approval expired; nothing ran",
            state=state,
            reason=reason,
            **ids,
        )
    if p.offer.brake == "run":
        return RunNotRunning(reason, state=state, reason=reason, **ids)
    if p.limit is not None and p.offer.brake is None:
        return ArgumentsRefused(
            f"{p.request.tool} denied: {reason}", state=state, reason=reason, rule=None, limit=p.limit, **ids
        )
    return CallDenied(f"{p.request.tool} denied: {reason}", state=state, reason=reason, rule=p.decision.rule, **ids)


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


def record_success(
    ledger: CallsPort, p: Prepared, result: Any, reported: dict[str, str], attempts: int, *, durability: str = "always"
) -> None:
    """`started -> completed` with the (redacted) result and every external id.

    `durability="by_class"` lets the commit of a repeat-safe call return without waiting for the disk (see
    `Guard(durability=...)`); every other commit waits."""
    side_effect = p.decision.side_effect
    lazy = durability == "by_class" and side_effect is not None and side_effect.repeat_safe
    ids = extract_ids(p.input.tool, result, reported)
    ledger.complete(
        p.request.run_id,
        p.offer.call_id,
        token=p.offer.lease_token,
        result_json=stored_result(p, result),
        external_ids=scrub_ids(p, ids),
        attempts=attempts,
        actor=p.request.actor,
        durable=not lazy,
    )


def stored_result(p: Prepared, result: Any) -> str:
    """A result as the ledger keeps it: the call's secret values scrubbed out, secret fields redacted."""
    return to_json(conceal(result, p.secrets, p.decision.secret_fields))


def scrub_ids(p: Prepared, ids: dict[str, str]) -> dict[str, str]:
    """External ids with the call's secret values cut out (a tool may report one as an id)."""
    return {kind: scrub_text(value, p.secrets) for kind, value in ids.items()} if p.secrets else ids


def error_text(p: Prepared, exc: BaseException) -> str:
    """The error as recorded and logged: its type and message, secret argument values scrubbed out."""
    texts = p.secrets or secret_texts(p.input.args, p.decision.secret_fields)
    return scrub_text(described(exc), texts)  # an exception whose own __str__ fails is still recorded
