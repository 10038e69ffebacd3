"""Reviewer tokens and the approval service's reads: who a bearer secret names, and the queue by risk.

A token's secret is `gtk_` plus 32 random bytes (URL-safe base64). Only its SHA-256 is stored, so a leaked
ledger yields no usable credential; the secret is returned once, by `create_token`. Creating and revoking a
token are events in the audit trail (entity `token`, no run). A revoked token stops working at once: every
request looks its hash up again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from guard.errors import GuardUsageError
from guard.ledger.backend import Connections
from guard.ledger.chain import SESSIONS, reviewer_stream
from guard.ledger.digests import claim, claim_deleted
from guard.ledger.moves import append_events, new_id
from guard.ledger.records import ApprovalRecord
from guard.side_effects import SideEffectClass

__all__ = ["TOKEN_PREFIX", "LedgerTokens", "QueuedApproval", "TokenRecord", "hash_token"]

TOKEN_PREFIX = "gtk_"  # noqa: S105 (a prefix, not a token)
_TOKEN_COLS = "token_id, reviewer, label, created_by, created_at, revoked_at, revoked_by"  # noqa: S105 (columns)
# Risk of a waiting call by its side-effect class: the queue shows the riskiest first, then the oldest.
_RISK = "CASE c.side_effect WHEN 'irreversible' THEN 3 WHEN 'compensable' THEN 2 WHEN 'idempotent' THEN 1 ELSE 0 END"


def hash_token(secret: str) -> str:
    """The stored form of a token secret (hex SHA-256). The secret has 256 bits of entropy: no salt needed."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A reviewer token as stored, without its secret. `active` until revoked."""

    token_id: str
    reviewer: str
    label: str | None
    created_by: str
    created_at: float
    revoked_at: float | None
    revoked_by: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "reviewer": self.reviewer,
            "label": self.label,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "active": self.active,
        }


@dataclass(frozen=True, slots=True)
class QueuedApproval:
    """A pending approval with the side-effect class of its call and the risk rank the queue sorts by."""

    approval: ApprovalRecord
    side_effect: SideEffectClass | None
    risk: int


class LedgerTokens:
    conns: Connections

    def create_token(self, reviewer: str, *, by: str, label: str | None = None) -> tuple[TokenRecord, str]:
        """Store a new token for `reviewer`; returns it with its secret, which is not kept anywhere."""
        reviewer = reviewer.strip()
        if not reviewer:
            raise GuardUsageError("a token must name a reviewer (as listed under `reviewers:` in a team policy)")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = new_id("tok")
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                "INSERT INTO reviewer_tokens (token_id, reviewer, token_hash, label, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, reviewer, hash_token(secret), label, by, now),
            )
            append_events(
                cur,
                [
                    (
                        None,
                        None,
                        now,
                        by,
                        "token",
                        None,
                        "active",
                        json.dumps({"token_id": token_id, "reviewer": reviewer, "label": label}),
                    )
                ],
                [claim(cur, "reviewer_tokens", token_id)],
                stream=reviewer_stream(reviewer),
            )
        return TokenRecord(token_id, reviewer, label, by, now, None, None), secret

    def revoke_token(self, token_id: str, *, by: str) -> TokenRecord:
        """Revoke a token (it stops working at once). Revoking a revoked token changes nothing.

        Raises:
            GuardUsageError: no token has that id.
        """
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                "UPDATE reviewer_tokens SET revoked_at = ?, revoked_by = ? "
                "WHERE token_id = ? AND revoked_at IS NULL RETURNING reviewer",
                (now, by, token_id),
            )
            revoked = cur.fetchone()
            if revoked is not None:
                append_events(
                    cur,
                    [(None, None, now, by, "token", "active", "revoked", json.dumps({"token_id": token_id}))],
                    [claim(cur, "reviewer_tokens", token_id)],
                    stream=reviewer_stream(revoked[0]),
                )
            cur.execute(f"SELECT {_TOKEN_COLS} FROM reviewer_tokens WHERE token_id = ?", (token_id,))
            row = cur.fetchone()
        if row is None:
            raise GuardUsageError(f"no token {token_id}; list them with `guard tokens list`", token_id=token_id)
        return TokenRecord(*row)

    def list_tokens(self, *, include_revoked: bool = False) -> list[TokenRecord]:
        sql = f"SELECT {_TOKEN_COLS} FROM reviewer_tokens"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self.conns.read() as cur:
            cur.execute(sql + " ORDER BY created_at", ())
            return [TokenRecord(*row) for row in cur.fetchall()]

    def token_for_secret(self, secret: str) -> TokenRecord | None:
        """The active token whose secret this is, or None (unknown, malformed or revoked)."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        with self.conns.read() as cur:
            cur.execute(
                f"SELECT {_TOKEN_COLS} FROM reviewer_tokens WHERE token_hash = ? AND revoked_at IS NULL",
                (hash_token(secret),),
            )
            row = cur.fetchone()
        return None if row is None else TokenRecord(*row)

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self.conns.read() as cur:
            cur.execute(f"SELECT {_TOKEN_COLS} FROM reviewer_tokens WHERE token_id = ?", (token_id,))
            row = cur.fetchone()
        return None if row is None else TokenRecord(*row)

    def approval_queue(self, *, teams: list[str], limit: int = 200) -> list[QueuedApproval]:
        """Pending approvals of `teams`, riskiest first (by the call's side-effect class), then oldest."""
        if not teams:
            return []
        cols = ", ".join(f"a.{c}" for c in ApprovalRecord.columns())
        marks = ", ".join("?" * len(teams))
        with self.conns.read() as cur:
            cur.execute(
                f"SELECT {cols}, c.side_effect, {_RISK} AS risk FROM approvals a "
                f"JOIN calls c ON c.call_id = a.call_id WHERE a.state = 'pending' AND a.team IN ({marks}) "
                "ORDER BY risk DESC, a.requested_at LIMIT ?",
                (*teams, limit),
            )
            rows = cur.fetchall()
        width = len(ApprovalRecord.columns())
        return [
            QueuedApproval(
                ApprovalRecord.from_row(r[:width]),
                None if r[width] is None else SideEffectClass(r[width]),
                int(r[width + 1]),
            )
            for r in rows
        ]

    def end_session(self, nonce: str, *, until: float) -> None:
        """Record a page session as ended (signed out); kept until its cookie would have expired anyway."""
        now = time.time()
        with self.conns.write() as cur:
            cur.execute("DELETE FROM ended_sessions WHERE expires_at < ? RETURNING nonce", (now,))
            claims = [claim_deleted("ended_sessions", gone) for (gone,) in cur.fetchall()]
            cur.execute(
                "INSERT INTO ended_sessions (nonce, ended_at, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
                (nonce, now, until),
            )
            if cur.fetchone() is not None:
                claims.append(claim(cur, "ended_sessions", nonce))
            if claims:
                append_events(
                    cur, [(None, None, now, "guard", "session", None, "ended", "{}")], claims, stream=SESSIONS
                )

    def session_ended(self, nonce: str) -> bool:
        with self.conns.read() as cur:
            cur.execute("SELECT 1 FROM ended_sessions WHERE nonce = ?", (nonce,))
            return cur.fetchone() is not None
