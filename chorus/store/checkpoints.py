"""The team's state after each turn, so a resumed conversation continues with its context."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.store.db import StoreError
from chorus.store.schema import checkpoints


class CheckpointStore:
    """Saves and loads AutoGen team state by thread, keyed to the thread's owner."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(self, thread_id: str, user: str, team: str, state: Mapping[str, Any]) -> None:
        # AutoGen state holds datetimes; JSON text round-trips them as ISO strings pydantic reads back.
        plain = json.loads(json.dumps(state, default=str))
        values = {"user_identifier": user, "team": team, "state": plain, "updated_at": sa.func.now()}
        try:
            async with self.engine.begin() as conn:
                updated = await conn.execute(
                    sa.update(checkpoints)
                    .where(checkpoints.c.thread_id == thread_id, checkpoints.c.user_identifier == user)
                    .values(**values)
                )
                if updated.rowcount == 0:
                    await conn.execute(sa.insert(checkpoints).values(thread_id=thread_id, **values))
        except Exception as exc:
            raise StoreError(f"could not save the team's state for thread {thread_id}: {exc}") from exc

    async def load(self, thread_id: str, user: str) -> tuple[str, dict[str, Any]] | None:
        """(team, state) of ``thread_id`` if ``user`` owns it, else None."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(checkpoints.c.team, checkpoints.c.state).where(
                        checkpoints.c.thread_id == thread_id, checkpoints.c.user_identifier == user
                    )
                )
            ).first()
        if row is None:
            return None
        state = row.state if isinstance(row.state, dict) else json.loads(row.state)
        return str(row.team), state
