"""initial schema: Chainlit's tables and Chorus's accounts and checkpoints

Revision ID: 0001
Revises: -
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('chorus_accounts',
    sa.Column('identifier', sa.Text(), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('identifier')
    )
    op.create_table('chorus_checkpoints',
    sa.Column('thread_id', sa.Text(), nullable=False),
    sa.Column('user_identifier', sa.Text(), nullable=False),
    sa.Column('team', sa.Text(), nullable=False),
    sa.Column('state', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('thread_id')
    )
    with op.batch_alter_table('chorus_checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chorus_checkpoints_user_identifier'), ['user_identifier'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('identifier', sa.Text(), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('createdAt', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('identifier')
    )
    op.create_table('threads',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('createdAt', sa.Text(), nullable=True),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('userId', sa.Text(), nullable=True),
    sa.Column('userIdentifier', sa.Text(), nullable=True),
    sa.Column('tags', sa.Text().with_variant(postgresql.ARRAY(sa.Text()), 'postgresql'), nullable=True),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_threads_userId'), ['userId'], unique=False)
        batch_op.create_index(batch_op.f('ix_threads_userIdentifier'), ['userIdentifier'], unique=False)

    op.create_table('elements',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('threadId', sa.Text(), nullable=True),
    sa.Column('type', sa.Text(), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('chainlitKey', sa.Text(), nullable=True),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('display', sa.Text(), nullable=True),
    sa.Column('objectKey', sa.Text(), nullable=True),
    sa.Column('size', sa.Text(), nullable=True),
    sa.Column('page', sa.Integer(), nullable=True),
    sa.Column('language', sa.Text(), nullable=True),
    sa.Column('forId', sa.Text(), nullable=True),
    sa.Column('mime', sa.Text(), nullable=True),
    sa.Column('props', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('autoPlay', sa.Boolean(), nullable=True),
    sa.Column('playerConfig', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['threadId'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('elements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_elements_threadId'), ['threadId'], unique=False)

    op.create_table('feedbacks',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('forId', sa.Text(), nullable=False),
    sa.Column('threadId', sa.Text(), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['threadId'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('feedbacks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedbacks_forId'), ['forId'], unique=False)

    op.create_table('steps',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('threadId', sa.Text(), nullable=False),
    sa.Column('parentId', sa.Text(), nullable=True),
    sa.Column('streaming', sa.Boolean(), nullable=False),
    sa.Column('waitForAnswer', sa.Boolean(), nullable=True),
    sa.Column('isError', sa.Boolean(), nullable=True),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('tags', sa.Text().with_variant(postgresql.ARRAY(sa.Text()), 'postgresql'), nullable=True),
    sa.Column('input', sa.Text(), nullable=True),
    sa.Column('output', sa.Text(), nullable=True),
    sa.Column('createdAt', sa.Text(), nullable=True),
    sa.Column('command', sa.Text(), nullable=True),
    sa.Column('modes', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('start', sa.Text(), nullable=True),
    sa.Column('end', sa.Text(), nullable=True),
    sa.Column('generation', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('showInput', sa.Text(), nullable=True),
    sa.Column('language', sa.Text(), nullable=True),
    sa.Column('indent', sa.Integer(), nullable=True),
    sa.Column('defaultOpen', sa.Boolean(), nullable=True),
    sa.Column('autoCollapse', sa.Boolean(), nullable=True),
    sa.Column('icon', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['threadId'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_steps_threadId'), ['threadId'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_steps_threadId'))

    op.drop_table('steps')
    with op.batch_alter_table('feedbacks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedbacks_forId'))

    op.drop_table('feedbacks')
    with op.batch_alter_table('elements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_elements_threadId'))

    op.drop_table('elements')
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_threads_userIdentifier'))
        batch_op.drop_index(batch_op.f('ix_threads_userId'))

    op.drop_table('threads')
    op.drop_table('users')
    with op.batch_alter_table('chorus_checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chorus_checkpoints_user_identifier'))

    op.drop_table('chorus_checkpoints')
    op.drop_table('chorus_accounts')

