"""Chainlit's SQLAlchemy data layer, made to work on SQLite too and to never swallow SQL errors.

Chainlit's ``SQLAlchemyDataLayer`` targets PostgreSQL and logs-then-ignores every SQL error,
so a missing column loses data silently. :class:`ChorusDataLayer` adapts the values each
database needs (SQLite has no arrays: tag lists travel as JSON text) and turns a failed
statement into a logged :class:`~chorus.store.db.StoreError`.

It is also where ownership is enforced, once for every route and socket event: each write to
a thread, step, element or feedback checks that it belongs to the caller
(:func:`chorus.store.caller.current_caller`) and raises :class:`~chorus.store.caller.NotYours`
otherwise. Chainlit's own routes only check that a session exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from sqlalchemy import text

from chorus.store.caller import TRUSTED, current_caller, refuse
from chorus.store.db import StoreError, configure
from chorus.store.files import LocalFileStore
from chorus.text import clean_text

log = logging.getLogger(__name__)

_TAG_KEYS = ("tags", "thread_tags", "step_tags")


class ChorusDataLayer(SQLAlchemyDataLayer):  # type: ignore[misc]
    """The data layer the page uses for users, threads, steps, elements and feedback."""

    def __init__(
        self,
        url: str,
        files: LocalFileStore | None = None,
        max_message_chars: int = 20_000,
        on_deleted: Callable[[str, str], Awaitable[Any]] | None = None,
    ) -> None:
        super().__init__(conninfo=url, storage_provider=files)  # type: ignore[arg-type]  # duck-typed client
        self.max_message_chars = max_message_chars
        self.on_deleted = on_deleted
        """Called with (owner identifier, thread id) once a thread is deleted: what else was kept
        with it (the files attached in it, in the vector store) goes too."""
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

    async def update_thread(
        self,
        thread_id: str,
        name: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> None:
        """Chainlit reads a thread's metadata, merges and writes it back: two updates at once (its
        own at the first message, ours saving the team) could each drop the other's keys, so
        they take turns. (Its own lock: create_step, which holds the write lock, calls this.)

        Only the thread's owner may write it; a new thread is owned by its caller from its
        first row on (Chainlit would name the owner a moment later, leaving a gap), and a thread
        with no owner is no one's to take."""
        _check_id(thread_id)
        if self._thread_lock is None:
            self._thread_lock = asyncio.Lock()
        async with self._thread_lock:
            if name is not None and len(name) > THREAD_NAME_CHARS:  # Chainlit names a thread by its first message
                name = name[: THREAD_NAME_CHARS - 1].rstrip() + "…"
            caller = current_caller()
            if caller is not TRUSTED:
                exists, owner = await self._thread_owner(thread_id)
                if exists and owner != caller:  # someone else's, or (old data) no one's: not claimable
                    refuse(None, "that conversation is not yours")
                if user_id is not None:
                    if await self._identifier_of(user_id) != caller:
                        refuse(None, "a conversation can only be given to its own user")
                elif not exists:
                    user = await self.get_user(str(caller))
                    if user is None:  # a removed account's page, still open: it makes nothing new
                        refuse(None, "this account no longer exists")
                    user_id = getattr(user, "id", None)
            await super().update_thread(thread_id, name=name, user_id=user_id, metadata=metadata, tags=tags)

    async def _thread_owner(self, thread_id: str) -> tuple[bool, str | None]:
        """(whether the thread exists, the identifier of its owner)."""
        rows = await self.execute_sql('SELECT "userIdentifier" AS owner FROM threads WHERE "id" = :id',
                                      {"id": thread_id})
        if isinstance(rows, list) and rows:
            owner = rows[0].get("owner")
            return True, None if owner is None else str(owner)
        return False, None

    async def _identifier_of(self, user_id: str) -> str | None:
        rows = await self.execute_sql("SELECT identifier FROM users WHERE id = :id", {"id": user_id})
        return str(rows[0]["identifier"]) if isinstance(rows, list) and rows else None

    async def _where(self, table: str, key: str, row_id: str) -> tuple[str, str | None] | None:
        """(thread, owner) of the row of ``table`` whose ``key`` is ``row_id``; None when there is none."""
        rows = await self.execute_sql(
            f'SELECT x."threadId" AS thread, t."userIdentifier" AS owner FROM {table} x '
            f'LEFT JOIN threads t ON x."threadId" = t."id" WHERE x."{key}" = :id', {"id": row_id})
        if isinstance(rows, list) and rows:
            owner = rows[0].get("owner")
            return str(rows[0].get("thread")), None if owner is None else str(owner)
        return None

    async def _check_row(self, table: str, row_id: str | None, thread_id: str | None, what: str) -> None:
        """An existing step or element may only be written by its thread's owner, and stays in
        its thread (a client naming someone else's id would otherwise move it into its own)."""
        if not row_id:
            return
        caller = current_caller()
        if caller is TRUSTED:
            return
        found = await self._where(table, "id", str(row_id))
        if found is None:
            return
        thread, owner = found
        if owner != caller or (thread_id is not None and thread != str(thread_id)):
            refuse(None, f"that {what} is not yours")

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
        thread_id = getattr(element, "thread_id", None) or None
        if getattr(element, "for_id", None):
            _check_id(thread_id)
        await self._check_row("elements", getattr(element, "id", None), thread_id, "file")
        if thread_id and getattr(element, "for_id", None):
            async with self.write_lock:
                await self.update_thread(thread_id)  # refuses a thread that is not the caller's
                await super().create_element(element)
            return
        await super().create_element(element)

    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        """Delete a file element (and its file): its owner only, whatever thread the client names."""
        await self._check_row("elements", element_id, thread_id, "file")
        await super().delete_element(element_id, thread_id)

    async def create_step(self, step_dict: Any) -> None:
        _check_id(step_dict.get("threadId"))
        step_dict = _refused_input_trimmed(step_dict, self.max_message_chars)
        async with self.write_lock:
            await self._check_row("steps", step_dict.get("id"), str(step_dict.get("threadId")), "message")
            await super().create_step(step_dict)  # its update_thread refuses a thread not the caller's

    async def delete_step(self, step_id: str) -> None:
        await self._check_row("steps", step_id, None, "message")
        await super().delete_step(step_id)

    async def upsert_feedback(self, feedback: Any) -> str:
        """Feedback on a reply in one of the caller's own conversations (and only their own
        feedback can be changed)."""
        if current_caller() is not TRUSTED:
            found = await self._where("steps", "id", str(feedback.forId))
            if found is None:
                refuse(None, "there is no such message to give feedback on")
            assert found is not None
            await self._check_row("steps", str(feedback.forId), None, "message")
            feedback.threadId = found[0]
            if feedback.id:
                await self._check_feedback(str(feedback.id), str(feedback.forId))
        return str(await super().upsert_feedback(feedback))

    async def delete_feedback(self, feedback_id: str) -> bool:
        await self._check_feedback(feedback_id, None)
        return bool(await super().delete_feedback(feedback_id))

    async def _check_feedback(self, feedback_id: str, for_id: str | None) -> None:
        if current_caller() is TRUSTED:
            return
        rows = await self.execute_sql('SELECT "forId" AS for_id FROM feedbacks WHERE "id" = :id', {"id": feedback_id})
        if not (isinstance(rows, list) and rows):
            return
        existing = str(rows[0]["for_id"])
        if for_id is not None and existing != for_id:
            refuse(None, "that feedback is not yours")
        await self._check_row("steps", existing, None, "feedback")

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

    async def _audit(self, action: str, target: str, detail: dict[str, Any]) -> None:
        """An audit-log entry (chorus.store.audit), by the caller when it is a user; never fatal."""
        from chorus.store import audit

        caller = current_caller()
        try:
            await audit.record(self.engine, action, target, detail,  # type: ignore[arg-type]
                               who=caller if isinstance(caller, str) else None)
        except Exception as exc:
            log.error("could not write the audit log (%s %s): %s", action, target, exc)

    async def list_threads(self, pagination: Any, filters: Any) -> Any:
        """The sidebar's conversations. A search finds the user's conversations whose name or any
        message (theirs or the team's) contains the words, case aside, in the database (Chainlit's
        own search reads every step of every conversation into memory and fails on an empty
        step). Only ever the caller's: ``filters.userId`` is the logged-in user's, set by Chainlit."""
        words = " ".join(str(filters.search or "").split())[:SEARCH_CHARS].lower()
        if not words:
            return await super().list_threads(pagination, filters)
        # Every word, anywhere: in the name or in some message of the conversation.
        terms = list(dict.fromkeys(words.split()))[:SEARCH_WORDS]
        params: dict[str, Any] = {"user": filters.userId}
        conditions = []
        for n, term in enumerate(terms):
            params[f"w{n}"] = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(
                f'(LOWER(COALESCE(t."name", \'\')) LIKE :w{n} ESCAPE \'\\\' OR EXISTS ('
                f'SELECT 1 FROM steps s WHERE s."threadId" = t."id" '
                f'AND s."type" IN (\'user_message\', \'assistant_message\') '
                f'AND LOWER(COALESCE(s."output", \'\')) LIKE :w{n} ESCAPE \'\\\'))')
        rows = await self.execute_sql(
            'SELECT t."id" AS id FROM threads t WHERE t."userId" = :user AND ' + " AND ".join(conditions), params)
        found = {str(r["id"]) for r in rows} if isinstance(rows, list) else set()
        unsearched = type(filters)(**{**filters.model_dump(), "search": None}) if hasattr(filters, "model_dump") \
            else filters
        from chainlit.types import PageInfo, PaginatedResponse, Pagination

        everything = await super().list_threads(Pagination(first=1_000_000), unsearched)
        threads = [t for t in everything.data if t["id"] in found]
        start = 0
        if pagination.cursor:
            start = next((i + 1 for i, t in enumerate(threads) if t["id"] == pagination.cursor), 0)
        page = threads[start:start + pagination.first]
        return PaginatedResponse(
            pageInfo=PageInfo(hasNextPage=len(threads) > start + pagination.first,
                              startCursor=page[0]["id"] if page else None, endCursor=page[-1]["id"] if page else None),
            data=page)

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
        """Delete the thread, its steps, elements (and their files) and feedback, the team's saved states
        and its approval requests."""
        caller = current_caller()
        exists, owner = await self._thread_owner(thread_id)
        if caller is not TRUSTED and exists and owner != caller:
            refuse(None, "that conversation is not yours")
        await super().delete_thread(thread_id)
        gone = getattr(self, "chorus_thread_gone", None)
        if gone is not None:  # from now on, late writes naming it are dropped (chainlit_fixes)
            gone(thread_id)
        for table in ("chorus_checkpoint_log", "chorus_checkpoints", "chorus_turn_states", "chorus_approvals"):
            await self.execute_sql(f"DELETE FROM {table} WHERE thread_id = :id", {"id": thread_id})
        if exists:
            await self._audit("conversation_deleted", thread_id, {"owner": owner})
        if exists and owner is not None and self.on_deleted is not None:
            try:
                await self.on_deleted(owner, thread_id)
            except Exception as exc:  # the conversation is gone either way; say what was left behind
                log.error("conversation %s was deleted, but what was kept with it was not: %s", thread_id, exc)


THREAD_NAME_CHARS = 200
SEARCH_CHARS = 200  # of a sidebar search
SEARCH_WORDS = 8

KEPT_OF_REFUSED = 2_000  # characters kept of a user message too long to be answered


def _refused_input_trimmed(step_dict: Any, limit: int) -> Any:
    """A user message over the length limit is refused by the turn; it is stored cut to its start,
    with a marker, so a refused 2 MB paste costs kilobytes, not megabytes."""
    output = step_dict.get("output")
    if step_dict.get("type") != "user_message" or not isinstance(output, str) or len(output) <= limit:
        return step_dict
    if len(clean_text(output)) <= limit:  # what the turn measures: it was answered, keep it whole
        return step_dict
    marker = (f"\n\n[… cut here: this message had {len(output):,} characters, over the limit of {limit:,}, "
              "so it was refused and only its start was kept]")
    return {**step_dict, "output": output[:min(limit, KEPT_OF_REFUSED)] + marker}


def _check_id(thread_id: Any) -> None:
    """Thread ids come from the client; Chainlit pastes stored ones into SQL. Only UUIDs get stored."""
    try:
        uuid.UUID(str(thread_id))
    except ValueError:
        raise StoreError(f"refusing a thread id that is not a UUID: {str(thread_id)[:80]!r}") from None
