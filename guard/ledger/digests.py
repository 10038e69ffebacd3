"""Row digests: what a covered row held when Guard last wrote it, carried by a chained event.

Every write that creates, changes or deletes a row of a covered table appends, in the same transaction, an event
that carries a *claim*: the table, the row's key and the SHA-256 of the row as written (`row_digest`). `guard
ledger verify` recomputes every current row's digest and compares it with the newest claim for that row, so an
edit of a call's arguments, a decision's reviewer or a token's revocation is found even though the row itself
is not chained. A deleted row's last claim is `DELETED`.

The digest is SHA-256 (hex) of the compact JSON array `[table, value, value, ...]` of the row's values in the
column order below (text, integers, floats as their shortest round-trip form, null). Not covered: `rate_windows`
and `stop_marks` (stop-rule counters), `restarts` and `restart_calls` (every step of a staged restart is a chained
event of its own), `notify_cursor` (how far the notifier read), `seen_requests` (signed requests already
received: a replay cache), `stream_heads` and `seals` (checked by the chain and the seals themselves),
`alembic_version`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from guard.canonical import fast_encoder
from guard.ledger.records import (
    ApprovalRecord,
    CallRecord,
    DecisionRecord,
    ManualActionRecord,
    NotificationRecord,
    RunRecord,
)

__all__ = [
    "ALL_COVERED",
    "COVERED",
    "COVERED_LATER",
    "DELETED",
    "Claim",
    "Covered",
    "claim",
    "claim_deleted",
    "returned_run",
    "row_digest",
    "row_key",
    "run_claim",
]

DELETED = "-"
KEY_SEP = "\x1f"

# (table, key, digest) as carried by an event
Claim = tuple[str, str, str]

_encode = fast_encoder(json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False))


@dataclass(frozen=True, slots=True)
class Covered:
    """A covered table: its columns in digest order and the columns of its key (joined by \\x1f)."""

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    int_key: bool = False  # keyed by an integer `id` (sorted as text to match the claims' `row_key`)

    @property
    def select(self) -> str:
        """`SELECT <columns> FROM <table> WHERE <key> = ?`: the row as the digest reads it."""
        where = " AND ".join(f"{k} = ?" for k in self.key)
        return f"SELECT {', '.join(self.columns)} FROM {self.table} WHERE {where}"

    def key_sql(self, postgres: bool = False) -> str:
        """The key as one text value in SQL, sorting as Python sorts `row_key` strings (by code point)."""
        sep = f" || {'chr' if postgres else 'char'}(31) || "
        text = "CAST(id AS TEXT)" if self.int_key else sep.join(self.key)
        return f'({text}) COLLATE "C"' if postgres else text


COVERED: dict[str, Covered] = {
    c.table: c
    for c in (
        Covered("runs", RunRecord.stored_columns(), ("run_id",)),
        Covered("calls", CallRecord.columns(), ("call_id",)),
        Covered("approvals", ApprovalRecord.columns(), ("approval_id",)),
        # Keyed by (approval, reviewer): a reviewer's revised decision replaces their row under the same key.
        Covered("approval_decisions", DecisionRecord.columns(), ("approval_id", "reviewer")),
        Covered(
            "reviewer_tokens",
            ("token_id", "reviewer", "token_hash", "label", "created_by", "created_at", "revoked_at", "revoked_by"),
            ("token_id",),
        ),
        Covered("ended_sessions", ("nonce", "ended_at", "expires_at"), ("nonce",)),
        Covered(
            "pauses",
            ("id", "scope", "team", "target", "reason", "paused_by", "at", "lifted_at", "lifted_by"),
            ("id",),
            int_key=True,
        ),
        Covered("manual_actions", ManualActionRecord.columns(), ("id",), int_key=True),
        Covered("notifications", NotificationRecord.columns(), ("id",), int_key=True),
    )
}


# Tables added after migration 0007 (which baselined every row of `COVERED` as it stood): they start empty, so
# every row of theirs is claimed from its first write. Verify and `claim` read `ALL_COVERED`.
COVERED_LATER: dict[str, Covered] = {
    c.table: c
    for c in (
        Covered(
            "incidents",
            (
                "incident_id",
                "title",
                "team",
                "scope_json",
                "state",
                "opened_by",
                "owner",
                "opened_at",
                "started_at",
                "paused_at",
                "last_changed_at",
                "next_update_at",
                "snapshot_path",
                "snapshot_digest",
                "snapshot_records",
                "snapshot_at",
                "snapshot_by",
                "closed_at",
                "closed_by",
            ),
            ("incident_id",),
        ),
        # Appended, never changed: a record's newest verdict row is its verdict, the older ones its history.
        Covered(
            "incident_verdicts",
            ("id", "incident_id", "call_id", "verdict", "note", "judged_by", "judged_at"),
            ("id",),
            int_key=True,
        ),
        Covered("incident_notes", ("id", "incident_id", "at", "author", "kind", "text"), ("id",), int_key=True),
        Covered(
            "drills",
            (
                "id",
                "team",
                "run_id",
                "incident_id",
                "state",
                "drilled_by",
                "started_at",
                "pause_s",
                "radius_s",
                "clean_s",
                "records",
                "detail",
            ),
            ("id",),
            int_key=True,
        ),
    )
}
ALL_COVERED: dict[str, Covered] = {**COVERED, **COVERED_LATER}


def row_digest(table: str, values: tuple[Any, ...] | list[Any]) -> str:
    """SHA-256 hex of `[table, *values]` as compact JSON (values in the table's digest column order)."""
    return hashlib.sha256(_encode([table, *values]).encode()).hexdigest()


_RUN_COLUMNS = RunRecord.stored_columns()
_RUN_REALS = tuple(_RUN_COLUMNS.index(c) for c in ("created_at", "updated_at"))


def returned_run(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A `runs` row as its INSERT or UPDATE `... RETURNING` gave it back, as a SELECT reads it: SQLite returns a
    REAL column's whole-number value as an integer there, where a SELECT (and verify) gives a float."""
    values = list(row)
    for i in _RUN_REALS:
        if values[i] is not None:
            values[i] = float(values[i])
    return tuple(values)


def run_claim(row: tuple[Any, ...]) -> Claim:
    """The claim of a `runs` row read as a SELECT reads it (`returned_run`): its stored columns first, in digest
    order; any derived ones after are left out."""
    return ("runs", str(row[0]), row_digest("runs", row[: len(_RUN_COLUMNS)]))


def row_key(table: str, values: tuple[Any, ...] | list[Any]) -> str:
    """The key of a row given its values in digest order (as verify derives it from the row)."""
    spec = ALL_COVERED[table]
    return KEY_SEP.join(str(values[spec.columns.index(k)]) for k in spec.key)


def claim(cur: Any, table: str, *key: Any) -> Claim:
    """The claim for a row as it is now inside the caller's transaction (DELETED when it is gone)."""
    spec = ALL_COVERED[table]
    cur.execute(spec.select, key)
    row = cur.fetchone()
    text_key = KEY_SEP.join(str(k) for k in key)
    return (table, text_key, DELETED if row is None else row_digest(table, row))


def claim_deleted(table: str, *key: Any) -> Claim:
    """The claim for a row this transaction deleted."""
    return (table, KEY_SEP.join(str(k) for k in key), DELETED)
