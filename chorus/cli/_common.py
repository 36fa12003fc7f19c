"""What every command shares: quiet logging, failing with a message, the migrated database,
the memory service, a known team."""

from __future__ import annotations

import logging
from typing import Any

import typer


def _quiet_logging(verbose: bool = False) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from chorus.logs import quiet_autogen

    quiet_autogen()


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _migrated_url() -> str:
    from chorus.settings import get_settings
    from chorus.store import StoreError, database_url, upgrade

    try:
        url = database_url(get_settings())
        upgrade(url)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    return url


def _db(url: str, action: Any) -> Any:
    """``chorus.store.db.run_with_engine``, imported when a command needs it (keeps --help fast)."""
    from chorus.store.db import run_with_engine

    return run_with_engine(url, action)


def _memory_service() -> Any:
    """The memory service with its store open, or a clear failure (memory off, store busy)."""
    from chorus.memory import MemoryService
    from chorus.memory.store import VectorStoreError
    from chorus.plugins.manager import load_plugins
    from chorus.settings import get_settings

    settings = get_settings()
    if not settings.memory:
        raise _fail("memory and the knowledge base are off (CHORUS_MEMORY=false)")
    service = MemoryService(settings, load_plugins(settings).embedders)
    try:
        service.store.client()
    except VectorStoreError as exc:
        raise _fail(str(exc)) from None
    return service


def _known_team(team: str | None) -> str | None:
    if team is None:
        return None
    from chorus.turn import Chorus, ChorusError

    try:
        return Chorus.load().team(team).name
    except ChorusError as exc:
        raise _fail(str(exc)) from None


def _hide_password(uri: str) -> str:
    import re

    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", uri)
