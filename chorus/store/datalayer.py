"""Chainlit's SQLAlchemy data layer, made to work on SQLite too and to never swallow SQL errors.

Chainlit's ``SQLAlchemyDataLayer`` targets PostgreSQL and logs-then-ignores every SQL error,
so a missing column loses data silently. :class:`ChorusDataLayer` adapts the values each
database needs (SQLite has no arrays: tag lists travel as JSON text) and turns a failed
statement into a logged :class:`~chorus.store.db.StoreError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from sqlalchemy import text

from chorus.store.db import StoreError, configure
from chorus.store.files import LocalFileStore

log = logging.getLogger(__name__)

_TAG_KEYS = ("tags", "thread_tags", "step_tags")


class ChorusDataLayer(SQLAlchemyDataLayer):  # type: ignore[misc]
    """The data layer the page uses for users, threads, steps, elements and feedback."""

    def __init__(self, url: str, files: LocalFileStore | None = None) -> None:
        super().__init__(conninfo=url, storage_provider=files)  # type: ignore[arg-type]  # duck-typed client
        configure(self.engine)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock: asyncio.Lock | None = None
        self._thread_lock: asyncio.Lock | None = None

    @property
    def write_lock(self) -> asyncio.Lock:
        # Chainlit writes a step from separate background tasks (send, then update); a FIFO lock
        # keeps them in the order they were started, so an early empty write cannot land last.
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    async def update_thread(self, thread_id: str, *args: Any, **kwargs: Any) -> None:
        """Chainlit reads a thread's metadata, merges and writes it back: two updates at once (its
        own at the first message, ours saving the team) could each drop the other's keys, so
        they take turns. (Its own lock: create_step, which holds the write lock, calls this.)"""
        _check_id(thread_id)
        if self._thread_lock is None:
            self._thread_lock = asyncio.Lock()
        async with self._thread_lock:
            await super().update_thread(thread_id, *args, **kwargs)

    async def _get_user_id_by_thread(self, thread_id: str) -> str | None:
        """The thread's owner, which names the folder of its files. A file sent with the first
        message arrives before Chainlit has written the thread's owner: it is the sender's."""
        found = await super()._get_user_id_by_thread(thread_id)
        if found:
            return str(found)
        from chainlit.context import context

        try:
            return getattr(context.session.user, "id", None)
        except Exception:  # no Chainlit context (a script, a test)
            return None

    async def create_element(self, element: Any) -> None:
        """Store a file element. Its thread row is made first (as Chainlit's create_step does):
        a file sent with a conversation's first message can arrive before the thread exists,
        and the foreign key would refuse it."""
        if getattr(element, "thread_id", None) and getattr(element, "for_id", None):
            _check_id(element.thread_id)
            async with self.write_lock:
                await self.update_thread(element.thread_id)
                await super().create_element(element)
            return
        await super().create_element(element)

    async def create_step(self, step_dict: Any) -> None:
        _check_id(step_dict.get("threadId"))
        async with self.write_lock:
            await super().create_step(step_dict)

    def _params(self, parameters: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in parameters.items():
            if isinstance(value, dict) or (self._sqlite and isinstance(value, list)):
                value = json.dumps(value)
            out[key] = value
        return out

    def _decode(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self._sqlite:
            return rows
        for row in rows:
            for key in _TAG_KEYS:
                value = row.get(key)
                if isinstance(value, str):
                    try:
                        row[key] = json.loads(value)
                    except ValueError:
                        row[key] = [value]
        return rows

    async def execute_sql(self, query: str, parameters: dict[str, Any]) -> list[dict[str, Any]] | int | None:
        async with self.async_session() as session:
            try:
                await session.begin()
                result = await session.execute(text(query), self._params(parameters))
                await session.commit()
            except Exception as exc:
                await session.rollback()
                statement = " ".join(query.split())[:200]
                log.error("SQL failed: %s | %s: %s", statement, type(exc).__name__, exc)
                raise StoreError(f"could not save to the database ({type(exc).__name__}): {exc}") from exc
            if result.returns_rows:
                rows = [dict(row._mapping) for row in result.fetchall()]
                cleaned = self.clean_result(rows)
                assert isinstance(cleaned, list)
                return self._decode(cleaned)
            return int(result.rowcount)

    async def turn_of_step(self, step_id: str, owner: str) -> str | None:
        """The turn id of a reply (or of the run step holding a turn's replies) in one of
        ``owner``'s threads, for its trace; None for anyone else's."""
        rows = await self.execute_sql(
            'SELECT s."metadata" AS metadata FROM steps s JOIN threads t ON s."threadId" = t."id" '
            'WHERE (s."id" = :id OR s."parentId" = :id) AND t."userIdentifier" = :owner',
            {"id": step_id, "owner": owner})
        for row in rows if isinstance(rows, list) else []:
            meta = row.get("metadata")
            meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
            if meta.get("turn_id"):
                return str(meta["turn_id"])
        return None

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the thread, its steps, elements (and their files) and feedback, and the team's saved states."""
        await super().delete_thread(thread_id)
        for table in ("chorus_checkpoints", "chorus_turn_states"):
            await self.execute_sql(f"DELETE FROM {table} WHERE thread_id = :id", {"id": thread_id})


def _check_id(thread_id: Any) -> None:
    """Thread ids come from the client; Chainlit pastes stored ones into SQL. Only UUIDs get stored."""
    try:
        uuid.UUID(str(thread_id))
    except ValueError:
        raise StoreError(f"refusing a thread id that is not a UUID: {str(thread_id)[:80]!r}") from None
