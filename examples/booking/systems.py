"""Three small stand-ins for the systems a booking touches: the slot inventory, the card processor, the mailer.

Each keeps its own SQLite file in a state directory, the way a real inventory and a real payment processor do
not share a database, and every effect is a row (with the key that made it where the system takes one), so
after a run you can see what each system really holds. Nothing here knows about Guard or the agent.

    inventory.db  holds     reserve a slot -> hold_id, release it
    payments.db   charges   charge a card -> charge_id (idempotency key), reverse it (refund)
    email.db      outbox    send a confirmation -> message_id (can be told to fail)
"""

from __future__ import annotations

from pathlib import Path

from examples.stand_ins import System, new_id

__all__ = ["Inventory", "Mailer", "MailerDown", "Payments", "holdings"]


class Inventory(System):
    """Slots held for a guest. A hold can be released: that is how a booking saga gives the slot back."""

    name, table = "inventory", "holds"
    schema = (
        "CREATE TABLE IF NOT EXISTS holds (hold_id TEXT PRIMARY KEY, slot TEXT NOT NULL, guest TEXT NOT NULL, "
        "status TEXT NOT NULL)"
    )

    def reserve(self, slot: str, guest: str) -> str:
        with self._db() as db:
            if db.execute("SELECT 1 FROM holds WHERE slot = ? AND status = 'held'", (slot,)).fetchone():
                raise LookupError(f"inventory: slot {slot} is already held")
            hold_id = new_id("hold")
            db.execute("INSERT INTO holds VALUES (?, ?, ?, 'held')", (hold_id, slot, guest))
            return hold_id

    def release(self, hold_id: str) -> str:
        with self._db() as db:
            db.execute("UPDATE holds SET status = 'released' WHERE hold_id = ?", (hold_id,))
            return "released"


class Payments(System):
    """Card charges. The same idempotency key returns the same charge; a charge can be reversed (a refund)."""

    name, table = "payments", "charges"
    schema = (
        "CREATE TABLE IF NOT EXISTS charges (charge_id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, "
        "booking TEXT NOT NULL, amount_cents INTEGER NOT NULL, status TEXT NOT NULL)"
    )

    def charge(self, booking: str, amount_cents: int, idempotency_key: str) -> str:
        with self._db() as db:
            row = db.execute("SELECT charge_id FROM charges WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
            if row is not None:
                return str(row["charge_id"])
            charge_id = new_id("ch")
            db.execute(
                "INSERT INTO charges VALUES (?, ?, ?, ?, 'captured')",
                (charge_id, idempotency_key, booking, amount_cents),
            )
            return charge_id

    def reverse(self, charge_id: str) -> str:
        with self._db() as db:
            db.execute("UPDATE charges SET status = 'refunded' WHERE charge_id = ?", (charge_id,))
            return "refunded"


class MailerDown(RuntimeError):
    """The mail provider refused the request before sending anything (the scripted failure)."""


class Mailer(System):
    """An outbox: a second call is a second email. `down=True` refuses every send before anything is sent."""

    name, table = "email", "outbox"
    schema = (
        "CREATE TABLE IF NOT EXISTS outbox (message_id TEXT PRIMARY KEY, to_addr TEXT NOT NULL, body TEXT NOT NULL)"
    )

    def __init__(self, state_dir: Path, *, down: bool = False) -> None:
        super().__init__(state_dir)
        self.down = down

    def send(self, to: str, body: str) -> str:
        if self.down:
            raise MailerDown("mailer: 503 Service Unavailable (scripted failure)")
        message_id = new_id("msg")
        with self._db() as db:
            db.execute("INSERT INTO outbox VALUES (?, ?, ?)", (message_id, to, body))
        return message_id


def holdings(*systems: System) -> list[str]:
    """What each system holds, one line a row."""
    return [f"{s.name}: {row}" for s in systems for row in s.rows()]
