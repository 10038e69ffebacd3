"""Three stand-ins for the systems of a contact sync: billing (the truth about each customer's plan), the CRM (a
status per contact, which the sync writes) and the mailer (the win-back list, which the sync enrolls churned
contacts in). Each keeps its own SQLite file; every effect is a row. Nothing here knows about Guard or the agent.

    billing.db  plans      contact -> plan (paid, cancelled, unknown): what the sync reads
    crm.db      contacts   contact -> status (customer, churned, ...): what the sync writes
    mail.db     winback    contact enrolled in the win-back mailing, or unenrolled
"""

from __future__ import annotations

from examples.stand_ins import System

__all__ = ["Billing", "Crm", "Mail"]


class Billing(System):
    name, table = "billing", "plans"
    schema = "CREATE TABLE IF NOT EXISTS plans (contact_id TEXT PRIMARY KEY, plan TEXT NOT NULL)"

    def seed(self, plans: dict[str, str]) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO plans VALUES (?, ?)", plans.items())

    def plans(self) -> dict[str, str]:
        return {r["contact_id"]: r["plan"] for r in self.rows()}


class Crm(System):
    """Contacts with a status. Setting a status returns the one it replaced, so it can be put back."""

    name, table = "crm", "contacts"
    schema = (
        "CREATE TABLE IF NOT EXISTS contacts (contact_id TEXT PRIMARY KEY, status TEXT NOT NULL, "
        "writes INTEGER NOT NULL DEFAULT 0)"
    )

    def seed(self, statuses: dict[str, str]) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO contacts (contact_id, status) VALUES (?, ?)", statuses.items())

    def set_status(self, contact_id: str, status: str) -> str:
        with self._db() as db:
            row = db.execute("SELECT status FROM contacts WHERE contact_id = ?", (contact_id,)).fetchone()
            if row is None:
                raise LookupError(f"crm: no contact {contact_id}")
            db.execute("UPDATE contacts SET status = ?, writes = writes + 1 WHERE contact_id = ?", (status, contact_id))
            return str(row["status"])

    def get(self, contact_id: str) -> dict[str, object] | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM contacts WHERE contact_id = ?", (contact_id,)).fetchone()
        return None if row is None else dict(row)

    def statuses(self) -> dict[str, str]:
        return {r["contact_id"]: r["status"] for r in self.rows()}

    def total_writes(self) -> int:
        return sum(int(r["writes"]) for r in self.rows())


class Mail(System):
    """The win-back mailing list: one row per enrollment (keyed), unenrolled rows stay with their state."""

    name, table = "mail", "winback"
    schema = (
        "CREATE TABLE IF NOT EXISTS winback (enrollment_id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, "
        "contact_id TEXT NOT NULL, state TEXT NOT NULL, changes INTEGER NOT NULL DEFAULT 1)"
    )

    def enroll(self, contact_id: str, idempotency_key: str) -> str:
        with self._db() as db:
            row = db.execute(
                "SELECT enrollment_id FROM winback WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if row is not None:
                return str(row["enrollment_id"])
            enrollment_id = f"wb_{contact_id}"
            db.execute(
                "INSERT INTO winback (enrollment_id, idempotency_key, contact_id, state) VALUES (?, ?, ?, 'enrolled')",
                (enrollment_id, idempotency_key, contact_id),
            )
            return enrollment_id

    def unenroll(self, enrollment_id: str) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE winback SET state = 'unenrolled', changes = changes + 1 WHERE enrollment_id = ?",
                (enrollment_id,),
            )

    def get(self, enrollment_id: str) -> dict[str, object] | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM winback WHERE enrollment_id = ?", (enrollment_id,)).fetchone()
        return None if row is None else dict(row)

    def enrolled(self) -> int:
        return sum(1 for r in self.rows() if r["state"] == "enrolled")

    def total_changes(self) -> int:
        return sum(int(r["changes"]) for r in self.rows())
