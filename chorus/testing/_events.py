"""Running one turn in a test, and picking what a test asserts on out of its events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from chorus.attachments import Attachment
from chorus.events import ApprovalEvent, DoneEvent, MessageEvent, ToolCallEvent, ToolResultEvent, TurnEvent
from chorus.turn import ChatSession, Chorus, run_turn

E = TypeVar("E", bound=TurnEvent)


async def run(
    target: Chorus | ChatSession,
    text: str,
    *,
    team: str | None = None,
    user_id: str | None = None,
    message_id: str | None = None,
    attachments: Sequence[Attachment] = (),
    approve: bool | None = None,
) -> list[TurnEvent]:
    """Run one turn with the user's ``text`` and return all its events (a ``DoneEvent`` last).

    ``target`` is a loaded :class:`Chorus` (a new conversation with ``team``, the default team when
    None, as ``user_id``, ``"local"`` when None) or a :class:`ChatSession` from ``chorus.open_session(...)``, whose team
    remembers the earlier turns. ``message_id`` and ``attachments`` are passed to the turn as the
    page passes them (an earlier ``message_id`` is an edit: the team is rewound first).

    ``approve`` answers every approval the turn asks for (a tool marked ``requires_approval``), as a
    user on the page would: True approves, False denies. Left None, the turn cannot ask, and such a
    call is refused (as in the chat-completions API).
    """
    if isinstance(target, Chorus):
        await target.connect_tools(team)  # the team's MCP servers
        session = target.open_session(team, user_id=user_id or "local")
    elif team is not None or user_id is not None:
        raise TypeError("team and user_id choose a new conversation: pass a Chorus, or open the session with them")
    else:
        session = target
    if approve is None:
        return [event async for event in run_turn(session, text, message_id=message_id, attachments=attachments)]
    from chorus.approvals import Approvals
    from chorus.store import approvals as approval_store
    from chorus.turn.approving import wake

    async with _approvals_store(session) as engine:
        if session.approvals is None:
            session.approvals = Approvals(engine, session.chorus.settings.approval_timeout)
        events: list[TurnEvent] = []
        async for event in run_turn(session, text, message_id=message_id, attachments=attachments):
            events.append(event)
            if isinstance(event, ApprovalEvent):
                await approval_store.decide(session.approvals.engine, event.id, user=session.user_id,
                                            approved=approve)
                wake(event.id)
        return events


@asynccontextmanager
async def _approvals_store(session: ChatSession) -> AsyncIterator[Any]:
    """Where a test's approval requests are stored: the session's own store, else a SQLite file in
    the Chorus's home (made and migrated on first use)."""
    if session.approvals is not None:
        yield session.approvals.engine
        return
    from chorus.store import make_engine, upgrade
    from chorus.store.db import database_url

    url = database_url(session.chorus.settings)
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        session.approvals = None
        await engine.dispose()


def events_of(events: Iterable[TurnEvent], kind: type[E]) -> list[E]:
    """The events of one kind, in order: ``events_of(events, ToolCallEvent)``."""
    return [event for event in events if isinstance(event, kind)]


def replies(events: Iterable[TurnEvent]) -> list[MessageEvent]:
    """The agents' finished messages, in order."""
    return events_of(events, MessageEvent)


def last_reply(events: Sequence[TurnEvent]) -> MessageEvent:
    """The turn's last agent message (``.agent``, ``.content``); AssertionError when there is none."""
    found = replies(events)
    if not found:
        raise AssertionError(f"the turn has no reply; its events were: {_summary(events)}")
    return found[-1]


def done(events: Sequence[TurnEvent]) -> DoneEvent:
    """The turn's ``DoneEvent`` (``.stop_reason``, tokens, cost), which is always its last event."""
    if not events or not isinstance(events[-1], DoneEvent):
        raise AssertionError(f"the turn did not end with a done event; its events were: {_summary(events)}")
    return events[-1]


def visible_text(events: Iterable[TurnEvent]) -> str:
    """Everything a user could read of a turn, one item a line: replies, tool arguments, tool results.

    Handy for asserting that something (another customer's data, a secret) was never shown.
    """
    parts: list[str] = []
    for event in events:
        if isinstance(event, MessageEvent):
            parts.append(event.content)
        elif isinstance(event, ToolCallEvent):
            parts.append(event.arguments)
        elif isinstance(event, ToolResultEvent):
            parts.append(event.result)
    return "\n".join(parts)


def _summary(events: Iterable[TurnEvent]) -> str:
    shown = []
    for event in events:
        detail = getattr(event, "message", None) or getattr(event, "text", None) or getattr(event, "detail", None)
        shown.append(f"{event.type}({detail!r})" if detail else event.type)
    return ", ".join(shown) or "none"
