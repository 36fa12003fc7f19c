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

from collections.abc import Awaitable, Callable
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


def _digest(args: Any) -> str:
    """A short, stable name for a tool call's arguments (the same call with the same arguments
    twice in a run is told apart by its journal key's count)."""
    import hashlib
    import json

    dumped = args.model_dump(mode="json") if hasattr(args, "model_dump") else args
    text = json.dumps(dumped, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


async def journaled(tool: str, args: Any, call: Callable[[], Awaitable[Any]],
                    as_text: Callable[[Any], str] = str) -> Any:
    """``call()``'s result, or, in a background run that already made this tool call with these
    arguments, the result it recorded then (then the call is not made again)."""
    journal = current_journal.get()
    if journal is None:
        return await call()
    key = journal.key("tool", f"{tool}:{_digest(args)}")
    recorded = journal.recorded(key)
    if recorded is not None:
        return recorded["result"]
    result = await call()
    await journal.record(key, {"result": as_text(result)})
    return result
