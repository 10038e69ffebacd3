"""Operator-facing names for where a run stands: `invoice_created_provisioning_failed`, not `failed`.

Derived from the ledger: the last effect that still stands, then the system whose call failed. A tool can
name its own effect (`guard.tool(..., label="invoice_created")`); otherwise the name comes from the tool's
name, `billing.create_invoice` -> `invoice_created`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from guard.ledger import CallRecord

__all__ = ["effect_label", "situation"]

_IRREGULAR = {
    "send": "sent",
    "make": "made",
    "get": "got",
    "set": "set",
    "put": "put",
    "pay": "paid",
    "find": "found",
    "build": "built",
    "run": "ran",
    "write": "written",
    "begin": "begun",
}
_STANDING = ("completed", "in_doubt", "rolling_back", "rollback_failed")


def _past(verb: str) -> str:
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and len(verb) > 1 and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def effect_label(tool: str) -> str:
    """`billing.create_invoice` -> `invoice_created`; `email.send_welcome` -> `welcome_sent`."""
    system, _, action = tool.rpartition(".")
    verb, _, noun = action.partition("_")
    return f"{noun or system or verb}_{_past(verb)}".replace("-", "_")


def system_of(tool: str) -> str:
    """`provisioning.create_workspace` -> `provisioning`."""
    return (tool.split(".", 1)[0] if "." in tool else tool).replace("-", "_")


def situation(
    calls: Iterable[CallRecord],
    failed_tool: str,
    label_of: Callable[[str], str | None],
    outcome: str = "failed",
    failed_call_id: str | None = None,
) -> str:
    """`<last standing effect>_<failed system>_<outcome>`, or `<failed system>_<outcome>` when nothing stands;
    `outcome` is `failed` or `in_doubt`."""
    standing = [
        c
        for c in calls
        if c.state in _STANDING
        and c.side_effect not in (None, "read")
        and c.compensates_call_id is None
        and c.call_id != failed_call_id
    ]
    tail = f"{system_of(failed_tool)}_{outcome}"
    if not standing:
        return tail
    last = standing[-1]
    return f"{label_of(last.tool) or effect_label(last.tool)}_{tail}"
