"""Four small stand-ins for the external systems of a new-customer onboarding.

Each system keeps its own SQLite file under a state directory, the way a real CRM and a real billing
service do not share a database. Every effect is a row with the key that made it (the email for the CRM,
the idempotency key for the others), so after a run you can look at what each system really holds.

Nothing here knows about Guard: these are "the world" the agent's tools change.

    crm.db           contacts   upsert by email -> contact_id, find
    billing.db       invoices   create a draft -> invoice_id, void, find by idempotency key
    provisioning.db  workspaces create -> workspace_id, delete, find by key (can be told to fail)
    email.db         outbox     send_welcome -> message_id, find by key (can be told to fail once)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from examples.stand_ins import System, new_id

__all__ = [
    "CRM",
    "SYSTEMS",
    "Billing",
    "Email",
    "EmailDown",
    "Provisioning",
    "ProvisioningDown",
    "counts",
    "format_snapshot",
    "snapshot",
]

DEFAULT_STATE_DIR = Path(__file__).resolve().parent / "state"


class _System(System):
    """A system of the onboarding story; its file lives in `examples/onboarding/state/` unless told otherwise."""

    def __init__(self, state_dir: str | Path = DEFAULT_STATE_DIR) -> None:
        super().__init__(state_dir)


class CRM(_System):
    """Contacts keyed by email: an upsert is naturally repeat-safe."""

    name, table, key_column = "crm", "contacts", "email"
    schema = (
        "CREATE TABLE IF NOT EXISTS contacts (contact_id TEXT PRIMARY KEY, email TEXT UNIQUE NOT NULL, "
        "name TEXT NOT NULL, company TEXT, writes INTEGER NOT NULL, updated_at REAL NOT NULL)"
    )

    def upsert_contact(self, email: str, name: str, company: str | None = None) -> str:
        """Create or update the contact with this email; returns its contact_id."""
        with self._db() as db:
            row = db.execute("SELECT contact_id FROM contacts WHERE email = ?", (email,)).fetchone()
            if row is not None:
                db.execute(
                    "UPDATE contacts SET name = ?, company = ?, writes = writes + 1, updated_at = ? WHERE email = ?",
                    (name, company, time.time(), email),
                )
                return str(row["contact_id"])
            contact_id = new_id("ct")
            db.execute(
                "INSERT INTO contacts VALUES (?, ?, ?, ?, 1, ?)", (contact_id, email, name, company, time.time())
            )
            return contact_id

    def find_contact(self, email: str) -> dict[str, Any] | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM contacts WHERE email = ?", (email,)).fetchone()
            return dict(row) if row is not None else None


class Billing(_System):
    """Draft invoices. A draft can be voided: that is how the onboarding saga takes one back."""

    name, table = "billing", "invoices"
    schema = (
        "CREATE TABLE IF NOT EXISTS invoices (invoice_id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, "
        "contact_id TEXT NOT NULL, amount_cents INTEGER NOT NULL, currency TEXT NOT NULL, "
        "status TEXT NOT NULL, created_at REAL NOT NULL)"
    )

    def create_invoice(
        self, contact_id: str, amount_cents: int, currency: str = "EUR", idempotency_key: str | None = None
    ) -> str:
        """Create a draft invoice; with an idempotency key, the same key returns the same invoice."""
        with self._db() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT invoice_id FROM invoices WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    return str(row["invoice_id"])
            invoice_id = new_id("inv")
            db.execute(
                "INSERT INTO invoices VALUES (?, ?, ?, ?, ?, 'draft', ?)",
                (invoice_id, idempotency_key, contact_id, amount_cents, currency, time.time()),
            )
            return invoice_id

    def void_invoice(self, invoice_id: str) -> str:
        """Void a draft (voiding a voided invoice changes nothing); returns the invoice's status now."""
        with self._db() as db:
            row = db.execute("SELECT status FROM invoices WHERE invoice_id = ?", (invoice_id,)).fetchone()
            if row is None:
                raise LookupError(f"billing: no invoice {invoice_id}")
            db.execute("UPDATE invoices SET status = 'voided' WHERE invoice_id = ?", (invoice_id,))
            return "voided"


class ProvisioningDown(RuntimeError):
    """The provisioning service refused the request (the scripted failure)."""


class Provisioning(_System):
    """Customer workspaces. `fail=True` (or GUARD_DEMO_PROVISIONING_FAIL=1) makes create_workspace fail
    before it writes anything: the seam for the demo's failure-and-compensation story."""

    name, table = "provisioning", "workspaces"
    schema = (
        "CREATE TABLE IF NOT EXISTS workspaces (workspace_id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, "
        "contact_id TEXT NOT NULL, plan TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL)"
    )

    def __init__(self, state_dir: str | Path = DEFAULT_STATE_DIR, *, fail: bool | None = None) -> None:
        super().__init__(state_dir)
        self.fail = fail if fail is not None else os.environ.get("GUARD_DEMO_PROVISIONING_FAIL") == "1"

    def create_workspace(self, contact_id: str, plan: str, idempotency_key: str | None = None) -> str:
        if self.fail:
            raise ProvisioningDown("provisioning: 503 Service Unavailable (scripted failure)")
        with self._db() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT workspace_id FROM workspaces WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    return str(row["workspace_id"])
            workspace_id = new_id("ws")
            db.execute(
                "INSERT INTO workspaces VALUES (?, ?, ?, ?, 'active', ?)",
                (workspace_id, idempotency_key, contact_id, plan, time.time()),
            )
            return workspace_id

    def delete_workspace(self, workspace_id: str) -> str:
        """Mark the workspace deleted (deleting it again changes nothing); returns its status now."""
        with self._db() as db:
            db.execute("UPDATE workspaces SET status = 'deleted' WHERE workspace_id = ?", (workspace_id,))
            return "deleted"


class EmailDown(RuntimeError):
    """The mail provider refused the request before sending anything (the scripted failure)."""


class Email(_System):
    """An outbox. Like a real mail provider, it sends whatever it is given: a second call is a second email.

    `fail_once=True` (or GUARD_DEMO_EMAIL_FAIL_ONCE=1) makes the first send of this instance fail before
    anything is sent, the way a provider answers 503 to a request it never accepted."""

    name, table = "email", "outbox"
    schema = (
        "CREATE TABLE IF NOT EXISTS outbox (message_id TEXT PRIMARY KEY, idempotency_key TEXT, "
        "to_addr TEXT NOT NULL, template TEXT NOT NULL, workspace_id TEXT, sent_at REAL NOT NULL)"
    )

    def __init__(self, state_dir: str | Path = DEFAULT_STATE_DIR, *, fail_once: bool | None = None) -> None:
        super().__init__(state_dir)
        self.failures_left = int(
            fail_once if fail_once is not None else os.environ.get("GUARD_DEMO_EMAIL_FAIL_ONCE") == "1"
        )

    def send_welcome(self, to: str, workspace_id: str, idempotency_key: str | None = None) -> str:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise EmailDown("email: 503 Service Unavailable, nothing sent (scripted failure)")
        message_id = new_id("msg")
        with self._db() as db:
            db.execute(
                "INSERT INTO outbox VALUES (?, ?, ?, 'welcome', ?, ?)",
                (message_id, idempotency_key, to, workspace_id, time.time()),
            )
        return message_id


SYSTEMS: tuple[type[_System], ...] = (CRM, Billing, Provisioning, Email)


def snapshot(state_dir: str | Path = DEFAULT_STATE_DIR) -> dict[str, list[dict[str, Any]]]:
    """What each system holds now: {system name: rows of its table}."""
    return {cls.name: cls(state_dir).rows() for cls in SYSTEMS}


def counts(state_dir: str | Path = DEFAULT_STATE_DIR) -> dict[str, int]:
    """How many rows each system holds (a contact's `writes` counts its updates too)."""
    snap = snapshot(state_dir)
    out = {name: len(rows) for name, rows in snap.items()}
    out["crm.writes"] = sum(int(r["writes"]) for r in snap["crm"])
    return out


_SHOWN = {
    "crm": ("contact_id", "email", "name", "company", "writes"),
    "billing": ("invoice_id", "contact_id", "amount_cents", "currency", "status", "idempotency_key"),
    "provisioning": ("workspace_id", "contact_id", "plan", "status", "idempotency_key"),
    "email": ("message_id", "to_addr", "template", "workspace_id", "idempotency_key"),
}


def format_snapshot(snap: dict[str, list[dict[str, Any]]]) -> str:
    """A plain-text table per system."""
    lines: list[str] = []
    for name, rows in snap.items():
        lines.append(f"{name} ({len(rows)} row{'s' if len(rows) != 1 else ''})")
        if not rows:
            lines.append("    (empty)")
            continue
        cols = _SHOWN.get(name, tuple(rows[0]))
        cells = [[str(r.get(c, "")) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        lines.append("    " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        lines.extend("    " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(lines)
