"""upload quota: the last hour's accepted uploads, one row per file, shared by every worker

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chorus_uploads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("quota_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("chorus_uploads", schema=None) as batch_op:
        batch_op.create_index("ix_chorus_uploads_key_created", ["quota_key", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("chorus_uploads")
