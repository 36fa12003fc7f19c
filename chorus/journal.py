"""The journal of a background run's finished calls (README, "Background runs").

A run that is interrupted (a worker killed, a restart) runs its turn again from the start; while
it does, each model call and tool call it already finished is answered from the journal instead
of being made again, so a recovered run asks the provider only for what it had not got yet and
ends where an uninterrupted run would. Calls are keyed by who makes them and how many such calls
came before (``catalog#2``), not by their global order, which the members of a fan-out that speak
at once do not keep from one attempt to the next.

The journal in effect is a context variable: a run's turn sets it, and the model client
(chorus.models.client) and plugin tools (chorus.plugins) consult it. Outside a run it is None and
nothing changes.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol


class Journal(Protocol):
    def key(self, kind: str, who: str) -> str:
        """The next key of ``kind`` (``model``, ``tool``) for ``who``: the same on every attempt."""
        ...

    def recorded(self, key: str) -> Any | None:
        """What the call ``key`` returned on an earlier attempt, or None (a miss: from here on the
        run is live again)."""
        ...

    async def record(self, key: str, value: Any) -> None:
        """Keep what the call ``key`` returned (JSON), before its result is used."""
        ...


current_journal: ContextVar[Journal | None] = ContextVar("chorus_journal", default=None)
