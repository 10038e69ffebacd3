"""streams, row claims and seals

Events get their stream, their place in it and the claim of a row (`row_table`, `row_key`, `row_digest`);
`stream_heads` holds each stream's length and last hash; `seals` the signed checkpoints.

An existing ledger's single chain is verified once, here, with the old hash: if any event does not follow from
the one before, the upgrade stops and names it (nothing is changed). Otherwise its events become the `legacy`
stream (seq 1..N in id order, hashes unchanged, still verified the old way), and every row that exists now gets
a first claim in the `baseline` stream, so `guard ledger verify` can compare it from now on. The first seal made
after the upgrade covers both.

Revision ID: 0007_streams
Revises: 0006_rate_windows
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from alembic import op

from guard.errors import LedgerNotReady
from guard.ledger.chain import BASELINE, GENESIS, LEGACY, event_hash, legacy_hash
from guard.ledger.digests import COVERED, row_digest, row_key

revision = "0007_streams"
down_revision = "0006_rate_windows"
branch_labels = None
depends_on = None

_CHUNK = 5000


def upgrade() -> None:
    bind = op.get_bind()
    length, head = _verify_legacy(bind)  # first: SQLite's DDL below would not be undone by a refusal
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("stream", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("row_table", sa.String(), nullable=True))
        batch.add_column(sa.Column("row_key", sa.String(), nullable=True))
        batch.add_column(sa.Column("row_digest", sa.String(), nullable=True))
    op.create_table(
        "stream_heads",
        sa.Column("stream", sa.String(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("head", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("stream"),
    )
    op.create_table(
        "sealed_heads",
        sa.Column("stream", sa.String(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("head", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("stream"),
    )
    op.create_table(
        "seals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("root", sa.String(), nullable=False),
        sa.Column("streams", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("signature", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if length:
        bind.execute(
            sa.text(
                "UPDATE events SET stream = :s, seq = r.n FROM (SELECT id, row_number() OVER "
                "(ORDER BY id) AS n FROM events) AS r WHERE events.id = r.id"
            ),
            {"s": LEGACY},
        )
        bind.execute(
            sa.text("INSERT INTO stream_heads (stream, length, head) VALUES (:s, :n, :h)"),
            {"s": LEGACY, "n": length, "h": head},
        )
    _baseline(bind)


def _verify_legacy(bind: Any) -> tuple[int, str]:
    """Walk the old single chain; stop the upgrade at the first event that does not follow."""
    prev, n = GENESIS, 0
    rows = bind.execute(
        sa.text(
            "SELECT id, run_id, call_id, at, actor, entity, from_state, to_state, detail, hash FROM events ORDER BY id"
        )
    )
    for id_, run_id, call_id, at, actor, entity, src, dst, detail, hash_ in rows:
        if legacy_hash(prev, run_id, call_id, at, actor, entity, src, dst, detail) != hash_:
            raise LedgerNotReady(
                f"event {id_} does not follow from the event before it: this ledger's audit chain was edited or "
                f"cut before the upgrade to streams ({n} events before it verify). Keep a copy of the file for "
                "investigation; the upgrade changed nothing.",
                url=str(bind.engine.url),
                revision=down_revision,
                needed=revision,
            )
        prev, n = hash_, n + 1
    return n, prev


def _baseline(bind: Any) -> None:
    """A first claim of every row that exists now, in the `baseline` stream."""
    now = time.time()
    seq, prev = 0, GENESIS
    insert = sa.text(
        "INSERT INTO events (run_id, call_id, at, actor, entity, from_state, to_state, detail, hash, "
        "stream, seq, row_table, row_key, row_digest) VALUES (NULL, NULL, :at, 'guard:upgrade', 'row', "
        "NULL, 'baseline', '{}', :hash, :stream, :seq, :t, :k, :d)"
    )
    for spec in COVERED.values():
        batch: list[dict[str, Any]] = []
        order = spec.key_sql(bind.dialect.name == "postgresql")
        rows = bind.execute(sa.text(f"SELECT {', '.join(spec.columns)} FROM {spec.table} ORDER BY {order}"))
        for row in rows:
            values = tuple(row)
            key, digest = row_key(spec.table, values), row_digest(spec.table, values)
            seq += 1
            prev = event_hash(
                prev,
                BASELINE,
                seq,
                None,
                None,
                now,
                "guard:upgrade",
                "row",
                None,
                "baseline",
                "{}",
                spec.table,
                key,
                digest,
            )
            batch.append(
                {"at": now, "hash": prev, "stream": BASELINE, "seq": seq, "t": spec.table, "k": key, "d": digest}
            )
            if len(batch) >= _CHUNK:
                bind.execute(insert, batch)
                batch = []
        if batch:
            bind.execute(insert, batch)
    if seq:
        bind.execute(
            sa.text("INSERT INTO stream_heads (stream, length, head) VALUES (:s, :n, :h)"),
            {"s": BASELINE, "n": seq, "h": prev},
        )


def downgrade() -> None:
    bind = op.get_bind()
    newer = bind.execute(
        sa.text("SELECT count(*) FROM events WHERE stream NOT IN (:a, :b)"), {"a": LEGACY, "b": BASELINE}
    ).scalar()
    if newer:
        raise LedgerNotReady(
            f"{newer} events were recorded in streams since the upgrade; the single chain of 0006 cannot hold them",
            url=str(bind.engine.url),
            revision=revision,
            needed=down_revision,
        )
    bind.execute(sa.text("DELETE FROM events WHERE stream = :b"), {"b": BASELINE})
    op.drop_table("seals")
    op.drop_table("sealed_heads")
    op.drop_table("stream_heads")
    with op.batch_alter_table("events") as batch:
        for column in ("row_digest", "row_key", "row_table", "seq", "stream"):
            batch.drop_column(column)
