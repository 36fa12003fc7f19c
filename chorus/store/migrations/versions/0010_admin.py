"""Admins: an account's role, the admin's versions of each team, and budget resets

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chorus_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "chorus_team_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("patch", sa.JSON(), nullable=False),
        sa.Column("diff", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team", "version", name="uq_chorus_team_versions_team_version"),
    )
    op.create_table(
        "chorus_budget_resets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_identifier", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("chorus_budget_resets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chorus_budget_resets_user_identifier"), ["user_identifier"],
                              unique=False)


def downgrade() -> None:
    op.drop_table("chorus_budget_resets")
    op.drop_table("chorus_team_versions")
    with op.batch_alter_table("chorus_accounts", schema=None) as batch_op:
        batch_op.drop_column("is_admin")
