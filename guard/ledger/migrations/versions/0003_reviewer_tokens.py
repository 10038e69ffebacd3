"""reviewer tokens of the approval service

API tokens stored as the SHA-256 of their secret (the secret itself is shown once, never stored); each names
a reviewer, whose roles come from the team policies when they act. Revoked tokens are kept for the audit trail.

Revision ID: 0003_reviewer_tokens
Revises: 0002_leases
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_reviewer_tokens"
down_revision = "0002_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviewer_tokens",
        sa.Column("token_id", sa.String(), nullable=False),
        sa.Column("reviewer", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=True),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("revoked_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("token_id"),
    )
    with op.batch_alter_table("reviewer_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviewer_tokens_reviewer"), ["reviewer"], unique=False)
        batch_op.create_index(batch_op.f("ix_reviewer_tokens_token_hash"), ["token_hash"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("reviewer_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviewer_tokens_token_hash"))
        batch_op.drop_index(batch_op.f("ix_reviewer_tokens_reviewer"))
    op.drop_table("reviewer_tokens")
