"""Engines and migrations: SQLite under the data directory by default, any SQLAlchemy URL otherwise.

The schema is owned by Alembic (``chorus/store/migrations``); :func:`upgrade` brings a
database to the newest revision and runs at start-up and from ``chorus db upgrade``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from chorus.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS = Path(__file__).with_name("migrations")
# A writer waits this long for the lock before "database is locked": a reconnect storm of hundreds
# of chats each storing its messages, usage and checkpoint queues that many commits at once.
SQLITE_BUSY_TIMEOUT_MS = 30_000


class StoreError(RuntimeError):
    """A database operation failed; the message says which and why."""


def database_url(settings: Settings) -> str:
    """The async SQLAlchemy URL: ``CHORUS_DATABASE_URL``, or SQLite in the data directory."""
    if settings.database_url:
        try:
            url = make_url(settings.database_url)
        except Exception as exc:
            raise StoreError(
                f"CHORUS_DATABASE_URL is not a database URL ({exc}); "
                "expected e.g. postgresql://user:password@host:5432/chorus"
            ) from None
        # Accept the URLs people copy from elsewhere and pick the async driver Chorus ships.
        drivers = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
        if url.drivername in drivers:
            url = url.set(drivername=drivers[url.drivername])
        return url.render_as_string(hide_password=False)
    home = settings.home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{home / 'chorus.db'}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit costs a write, not an
    # fsync, and a crash of the process (kill -9) still loses nothing; only a power cut may lose
    # the last commits. SQLite's documentation recommends it with WAL.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def configure(engine: AsyncEngine | Engine) -> None:
    """SQLite: WAL (synchronous=NORMAL), a busy timeout and foreign keys on every connection."""
    if engine.dialect.name == "sqlite":
        sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        event.listen(sync, "connect", _sqlite_pragmas)


def make_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` with Chorus's connection settings."""
    # SQLite files need no liveness ping; JSON columns take AutoGen state as is (datetimes as text).
    engine = create_async_engine(url, pool_pre_ping=not is_sqlite(url),
                                 json_serializer=functools.partial(json.dumps, default=str))
    configure(engine)
    return engine


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_MIGRATED: set[str] = set()


def _blocking(call: Callable[[], T]) -> T:
    """Run blocking (or ``asyncio.run``-based) work; in a worker thread when an event loop runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def run_with_engine(url: str, action: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``action`` with a short-lived engine for ``url`` (for start-up and the CLI)."""

    async def run() -> T:
        engine = make_engine(url)
        try:
            return await action(engine)
        finally:
            await engine.dispose()

    return _blocking(lambda: asyncio.run(run()))


MIGRATION_LOCK = threading.Lock()
"""Alembic keeps its migration context in module globals: two migrations at once in one process
(ours, and MLflow creating its tracking database in the tracing thread) would run in each
other's context. Everything that migrates holds this lock."""


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``, once per process and URL."""
    from alembic import command

    if revision == "head" and url in _MIGRATED:
        return

    def migrate() -> None:
        with MIGRATION_LOCK:
            command.upgrade(_alembic_config(url), revision)

    try:
        _blocking(migrate)
    except Exception as exc:
        safe = make_url(url).render_as_string(hide_password=True)
        raise StoreError(f"could not migrate the database {safe}: {type(exc).__name__}: {exc}") from exc
    if revision == "head":
        _MIGRATED.add(url)


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (None when it was never migrated)."""

    async def read(engine: AsyncEngine) -> str | None:
        async with engine.connect() as conn:
            has_table = await conn.run_sync(lambda c: sa.inspect(c).has_table("alembic_version"))
            if not has_table:
                return None
            row = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).first()
            return None if row is None else str(row[0])

    return run_with_engine(url, read)
