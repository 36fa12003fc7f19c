"""The team's saved state, so a conversation outlives the process that held it.

Two kinds of state per thread, both keyed to the thread's owner:

- the *checkpoint*: the team after the latest turn, which a resumed conversation continues from;
- *turn states*: the team before each user message, which an edit of that message rewinds to
  (the last :data:`KEEP_TURN_STATES` of each thread are kept).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.store.db import StoreError
from chorus.store.schema import checkpoints, turn_states

KEEP_TURN_STATES = 50


def _plain(state: Mapping[str, Any]) -> Any:
    # AutoGen state holds datetimes: the engine's JSON serializer writes them as ISO strings
    # (chorus.store.db.make_engine), which pydantic reads back. No copy needed here.
    return state


def _state(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


class CheckpointStore:
    """Saves and loads AutoGen team state by thread, keyed to the thread's owner."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(
        self,
        thread_id: str,
        user: str,
        team: str,
        state: Mapping[str, Any],
        *,
        before: tuple[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Save the team's state after a turn and, with ``before=(message_id, state)``, its state
        before that turn's user message, in one transaction."""
        values = {"user_identifier": user, "team": team, "state": _plain(state), "updated_at": sa.func.now()}
        try:
            async with self.engine.begin() as conn:
                updated = await conn.execute(
                    sa.update(checkpoints)
                    .where(checkpoints.c.thread_id == thread_id, checkpoints.c.user_identifier == user)
                    .values(**values)
                )
                if updated.rowcount == 0:
                    await conn.execute(sa.insert(checkpoints).values(thread_id=thread_id, **values))
                if before is not None:
                    await self._save_before(conn, thread_id, user, team, *before)
        except Exception as exc:
            raise StoreError(f"could not save the team's state for thread {thread_id}: {exc}") from exc

    async def _save_before(
        self, conn: Any, thread_id: str, user: str, team: str, message_id: str, state: Mapping[str, Any]
    ) -> None:
        key = (turn_states.c.thread_id == thread_id, turn_states.c.user_identifier == user)
        await conn.execute(sa.delete(turn_states).where(*key, turn_states.c.message_id == message_id))
        await conn.execute(
            sa.insert(turn_states).values(
                thread_id=thread_id, message_id=message_id, user_identifier=user, team=team,
                state=_plain(state), created_at=datetime.now(UTC),
            )
        )
        keep = (
            sa.select(turn_states.c.message_id).where(*key)
            .order_by(turn_states.c.created_at.desc()).limit(KEEP_TURN_STATES)
        )
        await conn.execute(sa.delete(turn_states).where(*key, turn_states.c.message_id.not_in(keep)))

    async def load(self, thread_id: str, user: str) -> tuple[str, dict[str, Any]] | None:
        """(team, state) after the latest turn of ``thread_id`` if ``user`` owns it, else None."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(checkpoints.c.team, checkpoints.c.state).where(
                        checkpoints.c.thread_id == thread_id, checkpoints.c.user_identifier == user
                    )
                )
            ).first()
        return None if row is None else (str(row.team), _state(row.state))

    async def rewind_to(self, thread_id: str, user: str, message_id: str) -> tuple[str, dict[str, Any]] | None:
        """(team, state) before ``message_id``, forgetting the turn states that came after it;
        None when that message's state is not kept (or ``user`` does not own the thread)."""
        key = (turn_states.c.thread_id == thread_id, turn_states.c.user_identifier == user)
        async with self.engine.connect() as conn:  # most messages are new: a read, no write
            row = (
                await conn.execute(
                    sa.select(turn_states.c.team, turn_states.c.state, turn_states.c.created_at)
                    .where(*key, turn_states.c.message_id == message_id)
                )
            ).first()
        if row is None:
            return None
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(turn_states).where(*key, turn_states.c.created_at > row.created_at))
        return str(row.team), _state(row.state)

    async def forget(self, thread_id: str) -> None:
        """Delete every saved state of ``thread_id`` (the thread was deleted)."""
        async with self.engine.begin() as conn:
            for table in (checkpoints, turn_states):
                await conn.execute(sa.delete(table).where(table.c.thread_id == thread_id))
