"""What every command shares: quiet logging, failing with a message, the migrated database,
the memory service, a known team."""

from __future__ import annotations

import logging
import os
from pathlib import Path
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
    """``chorus.store.db.run_with_engine``, imported when a command needs it (keeps --help fast).
    What it changes is recorded in the audit log as done by ``cli:<system user>``."""
    from chorus.store import audit
    from chorus.store.db import run_with_engine

    with audit.acting(_cli_actor()):
        return run_with_engine(url, action)


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name known (a container without one)
        return f"cli:uid-{os.getuid()}"


def _audit(action: str, target: str = "", detail: dict[str, Any] | None = None) -> None:
    """Record an audit-log entry for what a command did outside the database (an export, memories)."""
    from chorus.store import audit

    try:
        _db(_migrated_url(), lambda engine: audit.record(engine, action, target, detail))
    except Exception as exc:
        logging.getLogger("chorus").error("could not write the audit log (%s %s): %s", action, target, exc)


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


def _metrics_directory() -> None:
    """Metrics in multiprocess mode (chorus.metrics): every process of this machine writes its
    values under ``CHORUS_HOME/metrics`` (or ``PROMETHEUS_MULTIPROC_DIR``), and ``/metrics`` on any
    of them adds them up. Before anything imports ``prometheus_client``."""
    from chorus.settings import get_settings

    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or get_settings().home.expanduser() / "metrics")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logging.getLogger("chorus").warning("metrics stay in this process: cannot create %s (%s)", folder, exc)
        return
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    from chorus.metrics import forget_dead_processes

    forget_dead_processes()

