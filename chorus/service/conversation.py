"""Conversations outside the page: the OpenAI-compatible API and background runs talk to a team
through :class:`Conversations`, on the same ``run_turn`` and the same stored conversations as the page.

A stored conversation is a Chainlit thread owned by the key's user: its messages are written as
the page writes them (the user's message before the team is asked, each agent's reply as it
ends), its team's state is checkpointed after each turn, so the same thread opens in the page's
history and goes on there, and a thread begun on the page goes on here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.events import MessageEvent, TurnEvent
from chorus.store.caller import request_by
from chorus.store.checkpoints import CheckpointStore
from chorus.store.datalayer import ChorusDataLayer
from chorus.store.schema import threads
from chorus.store.usage import UsageLedger
from chorus.teams import TeamSpec
from chorus.turn import ChatSession, Chorus, ChorusError, run_turn

THREAD_NAME_CHARS = 80


class ConversationError(Exception):
    """A conversation that cannot be opened; ``status`` is the HTTP status that fits, ``code`` a
    stable name, ``str()`` the reason written for the program's author."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Conversation:
    """An open conversation: the session, and whether (and where) it is stored."""

    session: ChatSession
    stored: bool
    new: bool

    @property
    def thread_id(self) -> str:
        return self.session.thread_id

    @property
    def team(self) -> TeamSpec:
        return self.session.spec


@contextlib.contextmanager
def acting_as(user: str, thread_id: str | None = None) -> Iterator[None]:
    """Writes to the conversation store in this block are ``user``'s: the data layer checks each
    against them (as it checks a logged-in page's), and a new thread is theirs."""
    import chainlit as cl
    from chainlit.context import ChainlitContext, context_var
    from chainlit.session import HTTPSession

    session = HTTPSession(id=uuid.uuid4().hex, thread_id=thread_id, user=cl.User(identifier=user),
                          client_type="webapp")
    with request_by(user):
        token = context_var.set(ChainlitContext(session))
        try:
            yield
        finally:
            context_var.reset(token)


class Conversations:
    """Opens conversations for a user and a team, and runs their turns with the transcript stored."""

    def __init__(self, chorus: Chorus, engine: AsyncEngine, layer: ChorusDataLayer) -> None:
        self.chorus = chorus
        self.engine = engine
        self.layer = layer
        self.busy: set[str] = set()
        """Threads with a turn running in this process (a second request for one is refused)."""

    async def open(self, user: str, team: str, thread_id: str | None = None, *, store: bool = True,
                   new_id: str | None = None) -> Conversation:
        """A conversation of ``user`` with ``team``: the stored thread ``thread_id`` (ConversationError
        404 when it is not the user's, 409 when it belongs to another team), else a new one (stored
        only with ``store``; its id is ``new_id`` when given)."""
        try:
            await self.chorus.overlays.refresh(self.engine)
            spec = self.chorus.team(team)
        except ChorusError as exc:
            raise ConversationError(404, "model_not_found", str(exc)) from None
        new = thread_id is None
        if thread_id is not None:
            owner, profile = await self._thread(thread_id)
            if owner != user:
                raise ConversationError(404, "conversation_not_found", f"No conversation {thread_id!r} of yours.")
            theirs = self._team_of(profile)
            if theirs is not None and theirs.name != spec.name:
                raise ConversationError(409, "wrong_team", f"Conversation {thread_id!r} is with the team "
                                                           f"{theirs.name!r}: ask model 'chorus/{theirs.name}'.")
        await self.chorus.connect_tools(spec)  # the team's MCP servers, if not running yet
        keys = self.chorus.personal_keys(self.engine)
        personal = await keys.get(user) if keys is not None else None  # the user's own provider key
        try:
            session = self.chorus.open_session(
                spec.name, user_id=user, thread_id=thread_id or new_id or uuid.uuid4().hex,
                checkpoints=CheckpointStore(self.engine) if store else None, ledger=UsageLedger(self.engine),
                personal=personal)
        except ChorusError as exc:
            raise ConversationError(503, "team_unavailable", str(exc)) from None
        if not new:
            await session.resume()
        return Conversation(session=session, stored=store, new=new)

    async def exists(self, thread_id: str) -> bool:
        return (await self._thread(thread_id))[0] is not None

    async def _thread(self, thread_id: str) -> tuple[str | None, str | None]:
        """(owner, chat profile) of a stored thread; (None, None) when there is none."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(threads.c.userIdentifier, threads.c.metadata)
                                      .where(threads.c.id == thread_id))).one_or_none()
        if row is None:
            return None, None
        metadata = row[1]
        if isinstance(metadata, str):
            import json

            try:
                metadata = json.loads(metadata)
            except ValueError:
                metadata = {}
        profile = metadata.get("chat_profile") if isinstance(metadata, dict) else None
        return (None if row[0] is None else str(row[0])), (str(profile) if profile else None)

    def _team_of(self, profile: str | None) -> TeamSpec | None:
        if profile is None:
            return None
        try:
            return self.chorus.team(profile)
        except ChorusError:
            return None

    async def turn(self, conversation: Conversation, text: str, *, typed: str | None = None,
                   source: str = "api", attachments: Sequence[Any] = (), message_id: str | None = None,
                   turn_id: str | None = None) -> AsyncGenerator[TurnEvent, None]:
        """Run one turn with ``text``; yields its events. In a stored conversation the user's
        message (``typed``, what the user wrote, when ``text`` carries more) is written before the
        team is asked, and each agent's reply as it ends.

        Given ``message_id`` and ``turn_id`` (a background run that runs again after an
        interruption), the stored messages keep their ids, so running again writes over them
        instead of adding copies, and a turn that had already ended is rewound first."""
        session = conversation.session
        user = session.user_id
        if session.thread_id in self.busy:
            raise ConversationError(409, "conversation_busy", "The team is still answering the previous message "
                                                              "of this conversation: wait for it.")
        self.busy.add(session.thread_id)
        try:
            message_id = message_id or str(uuid.uuid4())
            turn_id = turn_id or uuid.uuid4().hex
            replies = 0
            if conversation.stored:
                with acting_as(user, session.thread_id):
                    await self._store_user_message(conversation, typed if typed is not None else text, message_id,
                                                   source)
            async for event in run_turn(session, text, message_id=message_id, turn_id=turn_id,
                                        attachments=attachments):
                if conversation.stored and isinstance(event, MessageEvent) and event.content.strip():
                    replies += 1
                    reply_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"chorus:{turn_id}:{replies}"))
                    with acting_as(user, session.thread_id):
                        await self._store_reply(conversation, event, turn_id, message_id, reply_id)
                yield event
        finally:
            self.busy.discard(session.thread_id)

    async def _ensure_user(self, user: str) -> str:
        """The id of ``user``'s Chainlit user row (made if they never logged in to the page)."""
        import chainlit as cl

        found = await self.layer.get_user(user)
        if found is None:
            found = await self.layer.create_user(cl.User(identifier=user))
        if found is None:
            raise ConversationError(500, "store_failed", "Could not store the conversation's owner.")
        return str(found.id)

    async def _store_user_message(self, conversation: Conversation, text: str, message_id: str, source: str) -> None:
        session = conversation.session
        if conversation.new:
            user_id = await self._ensure_user(session.user_id)
            name = " ".join(text.split())
            if len(name) > THREAD_NAME_CHARS:
                name = name[: THREAD_NAME_CHARS - 1].rstrip() + "…"
            await self.layer.update_thread(session.thread_id, name=name or "API conversation", user_id=user_id,
                                           metadata={"chat_profile": session.spec.title, "chorus_source": source})
            conversation.new = False
        now = _now()
        await self.layer.create_step({
            "id": message_id, "threadId": session.thread_id, "parentId": None, "createdAt": now, "start": now,
            "end": now, "output": text, "name": session.user_id, "type": "user_message", "streaming": False,
            "isError": False, "waitForAnswer": False, "metadata": {"source": source}})

    async def _store_reply(self, conversation: Conversation, event: MessageEvent, turn_id: str,
                           message_id: str, reply_id: str) -> None:
        now = _now()
        await self.layer.create_step({
            "id": reply_id, "threadId": conversation.thread_id, "parentId": None, "createdAt": now,
            "start": now, "end": now, "output": event.content, "name": event.agent, "type": "assistant_message",
            "streaming": False, "isError": False, "waitForAnswer": False,
            "metadata": {"turn_id": turn_id, "message_id": message_id}})


def _now() -> str:
    """A step's time as Chainlit writes it (ISO 8601, UTC, with a Z)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
