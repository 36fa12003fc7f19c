"""The audit log: an append-only table (UPDATE and DELETE refused by triggers)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chorus_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), server_default="", nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("chorus_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chorus_audit_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_chorus_audit_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_chorus_audit_action"), ["action"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION chorus_audit_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'chorus_audit is append-only: % refused', TG_OP;
            END;
            $$ LANGUAGE plpgsql
        """)
        op.execute("""CREATE TRIGGER chorus_audit_no_update BEFORE UPDATE OR DELETE ON chorus_audit
                      FOR EACH ROW EXECUTE FUNCTION chorus_audit_append_only()""")
        op.execute("""CREATE TRIGGER chorus_audit_no_truncate BEFORE TRUNCATE ON chorus_audit
                      FOR EACH STATEMENT EXECUTE FUNCTION chorus_audit_append_only()""")
    else:
        op.execute("""CREATE TRIGGER chorus_audit_no_update BEFORE UPDATE ON chorus_audit
                      BEGIN SELECT RAISE(ABORT, 'chorus_audit is append-only: UPDATE refused'); END""")
        op.execute("""CREATE TRIGGER chorus_audit_no_delete BEFORE DELETE ON chorus_audit
                      BEGIN SELECT RAISE(ABORT, 'chorus_audit is append-only: DELETE refused'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS chorus_audit_no_update ON chorus_audit")
        op.execute("DROP TRIGGER IF EXISTS chorus_audit_no_truncate ON chorus_audit")
        op.execute("DROP FUNCTION IF EXISTS chorus_audit_append_only()")
    op.drop_table("chorus_audit")
