"""The contact sync's tools under Guard: read the plan, write the CRM status, enroll churned contacts in the
win-back mailing; each write with its compensation and a way to read its record back (`.inspect`, for an
incident's snapshot). The sync itself carries the bug of the story: it maps a paid plan to `churned`.

`app(db=...)` is this agent's Guard for the operator commands (`guard incident repair --app
examples.bad_run.agent:app`); the systems live beside the ledger file (or in `$GUARD_BAD_RUN_STATE`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.bad_run.systems import Billing, Crm, Mail
from guard import CallDenied, Guard, GuardedTool, ReconcileContext, RollbackContext, current_call

__all__ = ["TEAM", "SyncTools", "app", "make_tools", "sync_contacts"]

TEAM = "contacts"
POLICIES = Path(__file__).resolve().parents[2] / "policies"


@dataclass(frozen=True)
class SyncTools:
    billing: Billing
    crm: Crm
    mail: Mail
    set_status: GuardedTool
    enroll: GuardedTool


def state_dir(db: str | None) -> Path:
    if os.environ.get("GUARD_BAD_RUN_STATE"):
        return Path(os.environ["GUARD_BAD_RUN_STATE"])
    url = db or os.environ.get("GUARD_DATABASE_URL") or "guard.db"
    return Path(url.removeprefix("sqlite:///")).resolve().parent


def make_tools(guard: Guard, where: Path) -> SyncTools:
    billing, crm, mail = Billing(where), Crm(where), Mail(where)

    @guard.tool(name="crm.set_contact_status", external_ids={"contact": "contact_id"})
    def set_status(contact_id: str, status: str) -> dict[str, Any]:
        previous = crm.set_status(contact_id, status)
        return {"contact_id": contact_id, "status": status, "previous_status": previous}

    @set_status.compensation(name="crm.restore_contact_status", kind="correct")
    def restore_status(ctx: RollbackContext) -> dict[str, Any]:
        previous = str(ctx.result["previous_status"])
        crm.set_status(ctx.external_ids["contact"], previous)
        return {"contact_id": ctx.external_ids["contact"], "status": previous}

    @set_status.inspect
    def read_contact(ctx: ReconcileContext) -> dict[str, Any] | None:
        return crm.get(ctx.external_ids["contact"])

    @guard.tool(name="mail.enroll_winback", external_ids={"enrollment": "enrollment_id"})
    def enroll(contact_id: str) -> dict[str, Any]:
        call = current_call()
        return {"enrollment_id": mail.enroll(contact_id, call.idempotency_key or contact_id if call else contact_id)}

    @enroll.compensation(name="mail.unenroll_winback", kind="undo")
    def unenroll(ctx: RollbackContext) -> dict[str, Any]:
        mail.unenroll(ctx.external_ids["enrollment"])
        return {"enrollment_id": ctx.external_ids["enrollment"], "state": "unenrolled"}

    @enroll.inspect
    def read_enrollment(ctx: ReconcileContext) -> dict[str, Any] | None:
        return mail.get(ctx.external_ids["enrollment"])

    return SyncTools(billing, crm, mail, set_status, enroll)


def app(db: str | None = None) -> Guard:
    """This agent's Guard with its tools and their compensations and inspect hooks registered."""
    guard = Guard(policies=POLICIES, db=db, log_level=os.environ.get("GUARD_DEMO_LOG", "warning"))
    make_tools(guard, state_dir(db))
    return guard


def status_for(plan: str) -> str:
    """The sync's mapping from a billing plan to a CRM status, with the bug of the story: a paid plan lands as
    `churned` (the mapping was written against the old plan names)."""
    return {"paid": "churned", "cancelled": "churned", "unknown": "churned"}.get(plan, "lead")


def sync_contacts(guard: Guard, tools: SyncTools, event_id: str) -> tuple[int, str | None]:
    """One nightly sync run: every contact's status from its plan; churned ones enrolled in the win-back list.
    Returns how many statuses it wrote and, when a brake stopped it, why."""
    written = 0
    with guard.run(TEAM, source_event_id=event_id, subject="nightly contact sync"):
        for contact_id, plan in sorted(tools.billing.plans().items()):
            status = status_for(plan)
            try:
                tools.set_status(contact_id=contact_id, status=status)
            except CallDenied as stop:
                return written, stop.reason
            written += 1
            if status == "churned":
                tools.enroll(contact_id=contact_id)
    return written, None
