"""checkpoint log: each turn stores what it changed in the team's state, not the whole state twice

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Rows written before this revision keep their whole state in ``chorus_checkpoints.state`` and
``chorus_turn_states.state`` and are read as such (chorus.store.checkpoints); a thread moves to
the log at its next turn.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Before chorus_checkpoint_log exists: on SQLite this recreates chorus_checkpoints, which must
    # not cascade into the log (see chorus.store.schema).
    with op.batch_alter_table("chorus_checkpoints", schema=None) as batch_op:
        batch_op.alter_column("state", existing_type=JSON, nullable=True)
        batch_op.add_column(sa.Column("head", sa.Integer(), nullable=True))
    with op.batch_alter_table("chorus_turn_states", schema=None) as batch_op:
        batch_op.alter_column("state", existing_type=JSON, nullable=True)
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
    op.create_table(
        "chorus_checkpoint_log",
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_identifier", sa.Text(), nullable=False),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("base_bytes", sa.BigInteger(), nullable=False),
        sa.Column("delta_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["thread_id"], ["chorus_checkpoints.thread_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("thread_id", "seq"),
    )


def downgrade() -> None:
    # Threads already in the log lose their saved state (their header rows have none to go back to).
    op.drop_table("chorus_checkpoint_log")
    op.execute("DELETE FROM chorus_turn_states WHERE state IS NULL")
    op.execute("DELETE FROM chorus_checkpoints WHERE state IS NULL")
    with op.batch_alter_table("chorus_turn_states", schema=None) as batch_op:
        batch_op.drop_column("seq")
        batch_op.alter_column("state", existing_type=JSON, nullable=False)
    with op.batch_alter_table("chorus_checkpoints", schema=None) as batch_op:
        batch_op.drop_column("head")
        batch_op.alter_column("state", existing_type=JSON, nullable=False)
