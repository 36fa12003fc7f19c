"""Users' own provider keys (encrypted), and whose key paid for each model call

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chorus_personal_keys",
        sa.Column("user_identifier", sa.Text(), nullable=False),
        sa.Column("encrypted", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("hint", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_identifier"),
    )
    with op.batch_alter_table("chorus_usage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_source", sa.Text(), server_default="operator", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("chorus_usage", schema=None) as batch_op:
        batch_op.drop_column("key_source")
    op.drop_table("chorus_personal_keys")
