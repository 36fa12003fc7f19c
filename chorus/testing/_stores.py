"""A conversation store on disk for tests of what outlives a process (a restart, a resume)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from chorus.settings import Settings
from chorus.store import make_engine, upgrade
from chorus.store.checkpoints import CheckpointStore
from chorus.store.db import database_url


@asynccontextmanager
async def checkpoint_store(directory: Path) -> AsyncIterator[CheckpointStore]:
    """A real SQLite database under ``directory`` (created and migrated as ``chorus run`` does), as
    the store conversations are saved in: pass it to ``chorus.open_session(..., checkpoints=store)``,
    and a second ``make_chorus(...)`` on the same store is the server after a restart."""
    url = database_url(Settings(home=directory))
    upgrade(url)
    engine = make_engine(url)
    try:
        yield CheckpointStore(engine)
    finally:
        await engine.dispose()
