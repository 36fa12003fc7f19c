"""turn states: the team's state before each user message, so edits rewind after a restart

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chorus_turn_states",
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("user_identifier", sa.Text(), nullable=False),
        sa.Column("team", sa.Text(), nullable=False),
        sa.Column("state", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", "message_id"),
    )
    with op.batch_alter_table("chorus_turn_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chorus_turn_states_user_identifier"), ["user_identifier"], unique=False)


def downgrade() -> None:
    op.drop_table("chorus_turn_states")
