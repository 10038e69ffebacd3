"""Signed requests already received: a replay is refused by the database's uniqueness, on every replica.

The approval service records each signed request it accepts (a Slack interaction, keyed by its signature) with
the time after which its signature could not be accepted anyway (`expires_at`). Recording a key that is already
there is a replay. Two replicas receiving the same request at once both insert; one commits first and the other
finds the key taken (PostgreSQL makes the second insert wait for the first's commit; SQLite has one writer), so
exactly one of them accepts it. Rows past their expiry are pruned in the same transaction. Not tamper-covered
(`guard.ledger.digests`): a cache of what was seen, not a record of what happened.
"""

from __future__ import annotations

from guard.ledger.backend import Connections

__all__ = ["LedgerReplays"]


class LedgerReplays:
    conns: Connections

    def first_sighting(self, source: str, signature: str, *, expires_at: float, now: float) -> bool:
        """Record that `source` sent a request signed `signature`; False when it was recorded before (a replay).

        `expires_at`: when the signature can no longer be accepted by its own timestamp, so its row may go.
        `now`: the caller's clock, which judged that timestamp; rows expired by it are deleted here.

        Raises:
            LedgerUnavailable: the database cannot be reached (nothing recorded: the request must be refused).
        """
        with self.conns.write() as cur:
            cur.execute("DELETE FROM seen_requests WHERE expires_at < ?", (now,))
            cur.execute(
                "INSERT INTO seen_requests (source, signature, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (source, signature) DO NOTHING RETURNING signature",
                (source, signature, expires_at),
            )
            return cur.fetchone() is not None
