"""login sessions that end: logged-out tokens, and logins before a password change

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chorus_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sessions_after", sa.Float(), nullable=True))
    op.create_table(
        "chorus_revoked_logins",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_identifier", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("chorus_revoked_logins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chorus_revoked_logins_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("chorus_revoked_logins")
    with op.batch_alter_table("chorus_accounts", schema=None) as batch_op:
        batch_op.drop_column("sessions_after")
