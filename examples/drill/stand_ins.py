"""The stand-in tools team `crm-sync` drills its recovery with (`guard drill --team crm-sync`): an in-memory CRM and
mailing list that behave like the real ones (each write returns what it changed; each has its compensation), and a
scripted bad run: a sync that marks every contact `churned` and enrolls each in the win-back mailing, until the
team's brakes (`stop.records`, `on_trip: pause`) stop it.

Named in the team's policy (`drill: {stand_ins: examples.drill.stand_ins:stand_ins}`). Nothing here reaches a real
system: the drill rehearses the team's pause, blast radius and repair, not its vendors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guard import Guard, RollbackContext

__all__ = ["CONTACTS", "stand_ins"]

CONTACTS = 40  # the bad run would touch this many; the team's brakes stop it far sooner


def stand_ins(guard: Guard) -> Callable[[], None]:
    """Register the stand-in tools on the drill's Guard and return the bad run."""
    statuses = {f"ct_{n:03d}": "active" for n in range(CONTACTS)}
    enrolled: set[str] = set()

    @guard.tool(name="crm.set_contact_status", external_ids={"contact": "contact_id"})
    def set_status(contact_id: str, status: str) -> dict[str, Any]:
        previous, statuses[contact_id] = statuses[contact_id], status
        return {"contact_id": contact_id, "status": status, "previous_status": previous}

    @set_status.compensation(name="crm.restore_contact_status", kind="correct")
    def restore_status(ctx: RollbackContext) -> dict[str, Any]:
        statuses[ctx.external_ids["contact"]] = str(ctx.result["previous_status"])
        return {"contact_id": ctx.external_ids["contact"]}

    @guard.tool(name="mail.enroll_winback", external_ids={"enrollment": "contact_id"})
    def enroll(contact_id: str) -> dict[str, Any]:
        enrolled.add(contact_id)
        return {"contact_id": contact_id}

    @enroll.compensation(name="mail.unenroll_winback", kind="cancel")
    def unenroll(ctx: RollbackContext) -> dict[str, Any]:
        enrolled.discard(ctx.external_ids["enrollment"])
        return {"contact_id": ctx.external_ids["enrollment"]}

    def bad_run() -> None:
        for contact_id in statuses:
            set_status(contact_id=contact_id, status="churned")
            enroll(contact_id=contact_id)

    return bad_run
