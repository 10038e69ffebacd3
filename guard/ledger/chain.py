"""Hash chains per stream: each event's hash covers the previous event of its stream and its own stored fields.

A stream is the sequence of events about one thing: a run (`run:<run_id>`), a reviewer's tokens
(`reviewer:<name>`), a team's pauses (`pauses:<team>`), a team's notifications (`notices:<team>`), the page
sessions (`sessions`). Each stream's head (length and last hash) is a row of `stream_heads`, written in the same
transaction as its events, so writers on different streams never wait for one another's head.

Two streams are special: `legacy` holds the single global chain of ledgers made before streams (hashed the old
way, verified once by migration 0007), and `baseline` holds the first claims of the rows that existed then.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "GENESIS",
    "LEGACY",
    "event_hash",
    "legacy_hash",
    "notices_stream",
    "pauses_stream",
    "reviewer_stream",
    "run_stream",
]

GENESIS = "0" * 64
LEGACY = "legacy"
BASELINE = "baseline"
SESSIONS = "sessions"
_SEP = "\x1f"


def run_stream(run_id: str) -> str:
    return "run:" + run_id


def reviewer_stream(reviewer: str) -> str:
    return "reviewer:" + reviewer


def pauses_stream(team: str | None) -> str:
    return "pauses:" + (team or "*")


def notices_stream(team: str) -> str:
    return "notices:" + team


def event_hash(
    prev_hash: str,
    stream: str,
    seq: int,
    run_id: str | None,
    call_id: str | None,
    at: float,
    actor: str,
    entity: str,
    from_state: str | None,
    to_state: str,
    detail: str,
    row_table: str | None,
    row_key: str | None,
    row_digest: str | None,
) -> str:
    """SHA-256 hex over the stream's previous hash, the event's place in its stream and its fields as stored."""
    text = _SEP.join(
        (
            prev_hash,
            stream,
            str(seq),
            run_id or "",
            call_id or "",
            repr(at),
            actor,
            entity,
            from_state or "",
            to_state,
            detail,
            row_table or "",
            row_key or "",
            row_digest or "",
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def legacy_hash(
    prev_hash: str,
    run_id: str | None,
    call_id: str | None,
    at: float,
    actor: str,
    entity: str,
    from_state: str | None,
    to_state: str,
    detail: str,
) -> str:
    """The single global chain's hash, before streams (revisions up to 0006): the `legacy` stream's events."""
    text = _SEP.join(
        (prev_hash, run_id or "", call_id or "", repr(at), actor, entity, from_state or "", to_state, detail)
    )
    return hashlib.sha256(text.encode()).hexdigest()
