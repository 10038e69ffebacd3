"""The booking agent: an OpenAI Agents SDK `Agent` whose three function tools go through Guard.

reserve_slot -> inventory.reserve_slot   compensable: released by the saga (`inventory.release_slot`)
charge_card -> payments.charge_card      irreversible: two `payments` reviewers approve; refunded by the saga
send_confirmation -> email.send_confirmation  irreversible: `frontdesk` approves; if it fails, the saga runs

The rules are `policies/bookings.yaml`. The model is scripted (offline, no key): it asks for the three calls in
turn and then reports what the tools told it, `[guard]` refusals and failures included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents import Agent, function_tool
from guard_openai_agents import GuardedTools
from guard_openai_agents.testing import ScriptedModel, Step, calls, function_call, message, tool_outputs

from guard import Guard, RollbackContext, current_call

from .systems import Inventory, Mailer, Payments

__all__ = ["NAMES", "Booking", "Systems", "make_agent"]

# SDK tool name -> policy tool name (model-facing names cannot hold dots).
NAMES = {
    "reserve_slot": "inventory.reserve_slot",
    "charge_card": "payments.charge_card",
    "send_confirmation": "email.send_confirmation",
}
EXTERNAL_IDS = {
    "inventory.reserve_slot": {"hold": "hold_id"},
    "payments.charge_card": {"charge": "charge_id"},
    "email.send_confirmation": {"message": "message_id"},
}


@dataclass(frozen=True)
class Booking:
    booking: str
    guest: str
    slot: str
    amount_cents: int


@dataclass
class Systems:
    inventory: Inventory
    payments: Payments
    mailer: Mailer

    @classmethod
    def open(cls, state_dir: Path, *, mailer_down: bool = False) -> Systems:
        return cls(Inventory(state_dir), Payments(state_dir), Mailer(state_dir, down=mailer_down))


def script(b: Booking, turn: str) -> list[Step]:
    """What the model asks for, turn by turn (`turn` makes this delivery's tool call ids, as a real model's)."""

    def report(items: list[Any]) -> list[Any]:
        refused = [o for o in tool_outputs(items).values() if o.startswith("[guard]")]
        text = (
            f"Booking {b.booking} could not be completed: {refused[-1]}"
            if refused
            else f"Booking {b.booking} is confirmed: {b.slot} for {b.guest}, {b.amount_cents / 100:.2f} EUR charged."
        )
        return [message(text)]

    return [
        calls(function_call("reserve_slot", {"slot": b.slot, "guest": b.guest}, f"call_reserve_{turn}")),
        calls(
            function_call(
                "charge_card",
                {"booking": b.booking, "amount_cents": b.amount_cents, "card_token": "tok_visa_4242"},
                f"call_charge_{turn}",
            )
        ),
        calls(function_call("send_confirmation", {"to": b.guest, "booking": b.booking}, f"call_confirm_{turn}")),
        report,
    ]


def make_agent(guard: Guard, systems: Systems, booking: Booking, turn: str = "a") -> Agent[Any]:
    """The agent with its tools guarded, and what undoes each effect declared next to it."""
    inventory, payments, mailer = systems.inventory, systems.payments, systems.mailer

    @function_tool
    def reserve_slot(slot: str, guest: str) -> dict[str, Any]:
        """Hold a slot for the guest until the booking is paid."""
        return {"hold_id": inventory.reserve(slot, guest)}

    @function_tool
    def charge_card(booking: str, amount_cents: int, card_token: str) -> dict[str, Any]:
        """Charge the guest's card for the booking."""
        call = current_call()  # Guard's idempotency key goes to the processor: a repeat returns the same charge
        key = call.idempotency_key if call is not None and call.idempotency_key else booking
        return {"charge_id": payments.charge(booking, amount_cents, key)}

    @function_tool
    def send_confirmation(to: str, booking: str) -> dict[str, Any]:
        """Email the guest the booking confirmation."""
        return {"message_id": mailer.send(to, f"Your booking {booking} is confirmed.")}

    guarded = GuardedTools(guard, team="bookings", names=NAMES, external_ids=EXTERNAL_IDS)

    @guarded.tool("inventory.reserve_slot").compensation(name="inventory.release_slot", kind="cancel")
    def release_slot(ctx: RollbackContext) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]  # registered by the decorator
        return {"status": inventory.release(ctx.external_ids["hold"])}

    @guarded.tool("payments.charge_card").compensation(name="payments.reverse_charge", kind="undo")
    def reverse_charge(ctx: RollbackContext) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]  # registered by the decorator
        return {"status": payments.reverse(ctx.external_ids["charge"])}

    return Agent(
        name="booker",
        instructions="Book the slot, take the payment, confirm to the guest.",
        model=ScriptedModel(script(booking, turn)),
        tools=guarded.wrap([reserve_slot, charge_card, send_confirmation]),
    )
