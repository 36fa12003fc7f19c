"""The whole database schema, as SQLAlchemy tables; Alembic migrations (``migrations/``) own it.

Two groups of tables:

- Chainlit's (``users``, ``threads``, ``steps``, ``elements``, ``feedbacks``): every column the
  installed Chainlit's SQLAlchemy data layer writes, with its quoted camelCase names. Chainlit
  ships no DDL and silently ignores a missing column, so this file is the contract.
- Chorus's own (``chorus_accounts``, ``chorus_checkpoints``, ``chorus_checkpoint_log``,
  ``chorus_turn_states``, ``chorus_usage``, ``chorus_uploads``, ``chorus_api_keys``): password logins, the team's saved
  state after each turn (a header row per thread, and the log of what each turn changed), its
  state before each user message (what an edit of that message rewinds to), the cost ledger (one
  row per model call), the last hour's uploads (the upload quotas), and API keys (as hashes).

Types are portable: ids are text (Chainlit passes strings), JSON is JSON, and tag lists are a
text array on PostgreSQL and JSON text on SQLite (see ``chorus.store.datalayer``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

Tags = sa.Text().with_variant(postgresql.ARRAY(sa.Text()), "postgresql")
# JSONB on PostgreSQL: Chainlit's thread queries compare JSON values, which plain json cannot.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("identifier", sa.Text, nullable=False, unique=True),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("createdAt", sa.Text),
)

threads = sa.Table(
    "threads",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("createdAt", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("userId", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True),
    sa.Column("userIdentifier", sa.Text, index=True),
    sa.Column("tags", Tags),
    sa.Column("metadata", Json),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("threadId", sa.Text, sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("parentId", sa.Text),
    sa.Column("streaming", sa.Boolean, nullable=False),
    sa.Column("waitForAnswer", sa.Boolean),
    sa.Column("isError", sa.Boolean),
    sa.Column("metadata", Json),
    sa.Column("tags", Tags),
    sa.Column("input", sa.Text),
    sa.Column("output", sa.Text),
    sa.Column("createdAt", sa.Text),
    sa.Column("command", sa.Text),
    sa.Column("modes", Json),
    sa.Column("start", sa.Text),
    sa.Column("end", sa.Text),
    sa.Column("generation", Json),
    sa.Column("showInput", sa.Text),
    sa.Column("language", sa.Text),
    sa.Column("indent", sa.Integer),
    sa.Column("defaultOpen", sa.Boolean),
    sa.Column("autoCollapse", sa.Boolean),
    sa.Column("icon", sa.Text),
)

elements = sa.Table(
    "elements",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("threadId", sa.Text, sa.ForeignKey("threads.id", ondelete="CASCADE"), index=True),
    sa.Column("type", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("chainlitKey", sa.Text),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("display", sa.Text),
    sa.Column("objectKey", sa.Text),
    sa.Column("size", sa.Text),
    sa.Column("page", sa.Integer),
    sa.Column("language", sa.Text),
    sa.Column("forId", sa.Text),
    sa.Column("mime", sa.Text),
    sa.Column("props", Json),
    sa.Column("autoPlay", sa.Boolean),
    sa.Column("playerConfig", Json),
)

feedbacks = sa.Table(
    "feedbacks",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("forId", sa.Text, nullable=False, index=True),
    sa.Column("threadId", sa.Text, sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    sa.Column("value", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text),
)

accounts = sa.Table(
    "chorus_accounts",
    metadata,
    sa.Column("identifier", sa.Text, primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Logins made before this moment (epoch seconds) no longer count: set when the account is made
    # and when its password changes (chorus.web.logins).
    sa.Column("sessions_after", sa.Float),
    # Admins may use the admin page (chorus.web.admin): `chorus users add --admin`, `promote`, `demote`.
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Login tokens ended before they expire (logout), by hash, until they would have expired anyway.
revoked_logins = sa.Table(
    "chorus_revoked_logins",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("user_identifier", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

# One row per thread: whose it is, its team, and which row of the log holds the team's state after
# the latest turn (``head``). ``state`` is only set on rows written before the log existed
# (migration 0006): the whole state, read as such until the thread's next turn replaces it.
checkpoints = sa.Table(
    "chorus_checkpoints",
    metadata,
    sa.Column("thread_id", sa.Text, primary_key=True),
    sa.Column("user_identifier", sa.Text, nullable=False, index=True),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("state", Json, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("head", sa.Integer, nullable=True),
)

# The team's states as a log (chorus.store.checkpoints): a row is either a whole state (``parent``
# NULL, a keyframe) or what changed since its ``parent`` row, as JSON text. A turn adds a row the
# size of what it said, whatever the length of the conversation. Rows go with their thread's
# checkpoint row (ON DELETE CASCADE; SQLite enforces it with PRAGMA foreign_keys=ON, which
# chorus.store.db sets on every connection). Caution: for the same reason, a later migration that
# makes SQLite *recreate* chorus_checkpoints (alter or drop a column in batch mode) deletes the
# log with it unless it runs with foreign keys off.
checkpoint_log = sa.Table(
    "chorus_checkpoint_log",
    metadata,
    sa.Column("thread_id", sa.Text, sa.ForeignKey("chorus_checkpoints.thread_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("user_identifier", sa.Text, nullable=False),
    sa.Column("parent", sa.Integer, nullable=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("base_bytes", sa.BigInteger, nullable=False),  # size of the keyframe this row's chain starts at
    sa.Column("delta_bytes", sa.BigInteger, nullable=False),  # sizes of the changes since that keyframe, this row's too
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# The team's state before each user message: ``seq``, the row of chorus_checkpoint_log holding it;
# ``state``, the whole state, on rows written before the log existed (migration 0006).
turn_states = sa.Table(
    "chorus_turn_states",
    metadata,
    sa.Column("thread_id", sa.Text, primary_key=True),
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("user_identifier", sa.Text, nullable=False, index=True),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("state", Json, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("seq", sa.Integer, nullable=True),
)

usage = sa.Table(
    "chorus_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("user_identifier", sa.Text, nullable=False),
    sa.Column("thread_id", sa.Text, nullable=False, index=True),
    sa.Column("turn_id", sa.Text, nullable=False),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("agent", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("cost", sa.Float),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("key_source", sa.Text, nullable=False, server_default="operator"),  # whose key paid: operator, user
    sa.Index("ix_chorus_usage_user_created", "user_identifier", "created_at"),
)

# API keys (chorus.store.keys): only a hash of each key is kept. A key acts as its account
# (``user_identifier``); ``teams`` (a JSON list) limits which teams it may use, NULL = all.
api_keys = sa.Table(
    "chorus_api_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("user_identifier", sa.Text, nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("teams", sa.JSON, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
)

# Recent uploads (the last hour's, and a little more until pruned), one row per accepted file:
# the hourly upload quotas of every worker read and write here (chorus.store.quota).
uploads = sa.Table(
    "chorus_uploads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("quota_key", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Index("ix_chorus_uploads_key_created", "quota_key", "created_at"),
)


# Background runs (chorus.store.runs): one row per run, its events in order, the journal of its
# finished model and tool calls (what a recovered run replays instead of asking again), and the
# heartbeats of the processes that execute runs (a silent one's runs are taken over).
runs = sa.Table(
    "chorus_runs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("user_identifier", sa.Text, nullable=False, index=True),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("thread_id", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("turn_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, index=True),
    sa.Column("webhook", sa.Text, nullable=True),
    sa.Column("key_id", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("worker", sa.Text, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("webhook_status", sa.Text, nullable=True),
)

run_events = sa.Table(
    "chorus_run_events",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

run_calls = sa.Table(
    "chorus_run_calls",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

run_workers = sa.Table(
    "chorus_run_workers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
)

# The audit log (chorus.store.audit): append-only, enforced by triggers (migration 0009).
audit_log = sa.Table(
    "chorus_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.Text, nullable=False, index=True),
    sa.Column("action", sa.Text, nullable=False, index=True),
    sa.Column("target", sa.Text, nullable=False, server_default=""),
    sa.Column("address", sa.Text, nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
)


# An admin's versions of a team (chorus.store.team_versions): each row is the whole set of changes
# on top of the team's YAML file, never edited; a rollback is a new row with an earlier one's patch.
team_versions = sa.Table(
    "chorus_team_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("patch", sa.JSON, nullable=False),
    sa.Column("diff", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("team", "version", name="uq_chorus_team_versions_team_version"),
)

# An admin's reset of a user's daily budget: what the user spent before it no longer counts today.
budget_resets = sa.Table(
    "chorus_budget_resets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_identifier", sa.Text, nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("by", sa.Text, nullable=False),
)

# Users' own provider keys (chorus.store.personal_keys): the key encrypted (Fernet, with the key in
# CHORUS_HOME/secret_key or CHORUS_SECRET_KEY), the model it is for, and its last four characters.
personal_keys = sa.Table(
    "chorus_personal_keys",
    metadata,
    sa.Column("user_identifier", sa.Text, primary_key=True),
    sa.Column("encrypted", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("hint", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Tool calls waiting for a person (chorus.store.approvals): what an agent asked to run, for whom, and
# what became of it. Kept so that a reload, a lost connection or a restart shows it again.
approvals = sa.Table(
    "chorus_approvals",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("thread_id", sa.Text, nullable=False, index=True),
    sa.Column("user_identifier", sa.Text, nullable=False, index=True),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("agent", sa.Text, nullable=False),
    sa.Column("tool", sa.Text, nullable=False),
    sa.Column("arguments", sa.Text, nullable=False),
    sa.Column("request", sa.Text, nullable=False, server_default=""),
    sa.Column("run_id", sa.Text, nullable=True, index=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("decided_by", sa.Text, nullable=True),
    sa.Column("used", sa.Boolean, nullable=False, server_default=sa.false()),
)
