"""The audit log (README, "Audit log"): who did what, when, from where, in an append-only table.

Each entry is written in the same transaction as the change it records where there is one (an
account added, a key revoked, a conversation deleted), so a change and its entry stand or fall
together. The table refuses UPDATE and DELETE in the database itself (triggers, on SQLite and
PostgreSQL: migration 0009), so no code path, and nobody with the application's database access,
can rewrite what happened. Who acts (``actor``) and from where (``address``) come from context
variables: the page and the API set them for each request (the logged-in user, the client's
address), the CLI sets ``cli:<system user>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chorus.store.schema import audit_log

actor: ContextVar[str] = ContextVar("chorus_audit_actor", default="system")
address: ContextVar[str | None] = ContextVar("chorus_audit_address", default=None)

ACTIONS = (
    "login", "login_failed", "logout", "account_added", "account_removed", "password_changed", "key_created",
    "key_revoked", "conversation_deleted", "conversation_exported", "memory_forgotten", "admin_change",
    "personal_key_saved", "personal_key_deleted",
)


@contextlib.contextmanager
def acting(who: str, where: str | None = None) -> Iterator[None]:
    """Entries recorded in this block are ``who``'s, from ``where``."""
    token_actor = actor.set(who)
    token_address = address.set(where)
    try:
        yield
    finally:
        actor.reset(token_actor)
        address.reset(token_address)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    address: str | None
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor, "action": self.action,
                "target": self.target, "address": self.address, "detail": self.detail}


async def record(into: AsyncConnection | AsyncEngine, action: str, target: str = "",
                 detail: dict[str, Any] | None = None, *, who: str | None = None) -> None:
    """Append an entry (in ``into``'s transaction when it is a connection)."""
    assert action in ACTIONS, action
    values = {"at": datetime.now(UTC), "actor": who or actor.get(), "action": action, "target": target,
              "address": address.get(), "detail": detail or {}}
    if isinstance(into, AsyncConnection):
        await into.execute(sa.insert(audit_log).values(**values))
        return
    async with into.begin() as conn:
        await conn.execute(sa.insert(audit_log).values(**values))


async def read(engine: AsyncEngine, *, since: datetime | None = None, user: str | None = None,
               action: str | None = None, limit: int = 500) -> list[AuditEntry]:
    """The newest entries first; ``user``: entries by or about that user."""
    query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if user is not None:
        query = query.where(sa.or_(audit_log.c.actor == user, audit_log.c.target == user))
    if action is not None:
        query = query.where(audit_log.c.action == action)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    found = []
    for row in rows:
        m = row._mapping
        at = m["at"] if m["at"].tzinfo else m["at"].replace(tzinfo=UTC)
        found.append(AuditEntry(id=int(m["id"]), at=at, actor=str(m["actor"]), action=str(m["action"]),
                                target=str(m["target"] or ""), address=m["address"], detail=dict(m["detail"] or {})))
    return found
