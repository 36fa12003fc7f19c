"""The web app's state (:class:`WebApp`): what :func:`chorus.web.create_app` loaded and decided.

Chainlit calls its handlers with no way to hand them anything, so the app made by the factory is
reachable through :func:`current` from every handler and route of :mod:`chorus.web`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.store import make_engine
from chorus.store.checkpoints import CheckpointStore
from chorus.store.files import LocalFileStore
from chorus.turn import ChatSession, Chorus

SYSTEM = "Chorus"
"""The author of Chorus's own messages on the page (notices, errors, exports)."""


@dataclass
class WebApp:
    """One served app: the Chorus it answers with and how the page behaves."""

    chorus: Chorus
    database_url: str
    history: bool
    """Logins and the conversation list are on: an account exists, or the widget is."""
    widget_origins: list[str] = field(default_factory=list)
    widget_secret: str | None = None
    proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    files: LocalFileStore | None = None
    """Where attached files are kept (with history on)."""
    running: dict[asyncio.Future[Any], ChatSession] = field(default_factory=dict)
    """The task answering each turn now (stopped when the server stops)."""
    draining: asyncio.Task[None] | None = None
    """Set once stopping has begun: no new turn starts."""
    drain_deadline: float = 0.0
    stopping_runs: asyncio.Future[None] | None = None
    """Background runs stopping (chorus.web.api.state.stop_runs), once stopping has begun."""
    _engine: AsyncEngine | None = None

    def engine(self) -> AsyncEngine:
        """The server's engine, made on first use inside the server's event loop."""
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    def checkpoints(self) -> CheckpointStore | None:
        return CheckpointStore(self.engine()) if self.history else None


_current: WebApp | None = None


def current() -> WebApp:
    """The app :func:`chorus.web.create_app` made in this process."""
    if _current is None:
        raise RuntimeError("chorus.web.create_app() has not been called in this process")
    return _current


def set_current(app: WebApp) -> None:
    global _current
    _current = app
