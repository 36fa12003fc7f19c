"""Chainlit's chat handlers: the team menu (one chat profile per team), a chat's start, each
message (queued, committed, answered through ``run_turn`` and drawn by :mod:`chorus.web.render`),
and the stop button."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import chainlit as cl
from chainlit.data import get_data_layer

from chorus.attachments import Attachment, AttachmentError
from chorus.store.caller import NotYours
from chorus.store.usage import UsageLedger
from chorus.turn import ChatSession, ChorusError, run_turn
from chorus.web import approvals, logins, personal
from chorus.web.commands import EXPORT_COMMAND, MEMORIES_COMMAND, export, offer_commands, show_memories
from chorus.web.context import SYSTEM, current
from chorus.web.limiter import limiter
from chorus.web.pictures import MAP_COMMAND, show_conversation_map
from chorus.web.queue import line, wait_in_line
from chorus.web.render import PARTIAL_REPLY_EVERY_S, Renderer
from chorus.web.uploads import read_attachments
from chorus.widget import is_widget_identity

log = logging.getLogger("chorus.app")


def register() -> None:
    """The chat handlers, on Chainlit's configuration."""
    cl.set_chat_profiles(chat_profiles)
    cl.on_chat_start(start)
    cl.on_message(on_message)
    cl.on_stop(on_stop)
    personal.register()
    approvals.register(show_turn)


async def chat_profiles(user: cl.User | None = None, language: str | None = None) -> list[cl.ChatProfile]:
    """One chat profile per team; the default team first. A widget embedded for one team shows
    only that team."""
    profiles = []
    only = widget_team(user)
    for spec in current().chorus.catalog.teams.values():
        if only is not None and spec.name != only:
            continue
        starters = [cl.Starter(label=s.label, message=s.message) for s in spec.starters]
        profiles.append(
            cl.ChatProfile(
                name=spec.title,
                markdown_description=spec.description or f"The {spec.title} team.",
                default=spec.default or spec.name == only,
                starters=starters or _default_starters(spec.name),
            )
        )
    return profiles


def _default_starters(team: str) -> list[cl.Starter]:
    from chorus.teams.build import resolve_members

    chorus = current().chorus
    members, _ = resolve_members(chorus.team(team), chorus.registry)
    starters = []
    for member in members:
        examples = list(member.examples) + [
            e for t in member.tools if t in chorus.registry.tools for e in chorus.registry.tools[t].examples
        ]
        if examples:
            starters.append(cl.Starter(label=examples[0], message=examples[0]))
    return starters[:4]


async def prepare_chat() -> None:
    """Before a chat's session is opened: the admins' newest team versions, and the team's MCP
    servers started (a failure is the session's notice, not an error here)."""
    web = current()
    await web.chorus.overlays.refresh(web.engine())
    await personal.load()
    team = widget_team(cl.user_session.get("user")) or cl.user_session.get("chat_profile")
    with contextlib.suppress(ChorusError):  # an unknown team: session_of_chat says so
        await web.chorus.connect_tools(team)


def session_of_chat() -> ChatSession:
    """This chat's session, opened on first use (a message can arrive while on_chat_start runs).

    Synchronous on purpose: no other handler can interleave, so a chat never gets two sessions.
    Raises ChorusError for an unknown team or model.
    """
    session = cl.user_session.get("chorus")
    if isinstance(session, ChatSession):
        return session
    user = cl.user_session.get("user")
    team = widget_team(user) or cl.user_session.get("chat_profile")
    web = current()
    session = web.chorus.open_session(
        team,
        user_id=getattr(user, "identifier", None) or "anonymous",
        thread_id=cl.context.session.thread_id,
        checkpoints=web.checkpoints(),
        ledger=UsageLedger(web.engine()),
        personal=personal.loaded(),
    )
    session.approvals = approvals.approvals_for_chat()  # tools that need approval ask on the page
    cl.user_session.set("chorus", session)
    return session


def widget_team(user: Any) -> str | None:
    """The team a widget user's token chose (None for everyone else)."""
    if user is None or not is_widget_identity(str(getattr(user, "identifier", ""))):
        return None
    team = (getattr(user, "metadata", None) or {}).get("team")
    return str(team) if team and team in current().chorus.catalog.teams else None


async def account_ok() -> bool:
    """With logins on, a login that has ended (logged out, password changed, account removed, widget
    token expired) opens nothing, even on a socket connected before it ended."""
    if not current().history:
        return True
    try:
        valid = await logins.still_valid(current().engine(), getattr(cl.context.session, "token", None))
    except Exception as exc:
        log.error("could not check a login: %s", exc)
        valid = False
    if valid:
        return True
    user = cl.user_session.get("user")
    await cl.ErrorMessage(content=logins.ended_message(getattr(user, "identifier", None)), author=SYSTEM).send()
    return False


async def open_chat() -> ChatSession | None:
    """Open (or find) this chat's session for a new or reopened conversation; None after telling why."""
    if not await account_ok():
        return None
    if not isinstance(cl.user_session.get("chorus"), ChatSession):
        await prepare_chat()
    try:
        session = session_of_chat()
    except ChorusError as exc:
        await cl.ErrorMessage(content=str(exc), author=SYSTEM).send()
        return None
    await offer_commands()
    await show_notices(session)
    await personal.offer()
    return session


async def show_notices(session: ChatSession) -> None:
    """What the user should know as the chat opens (a broken plugin, memory unavailable), shown by
    chorus.js and chorus-widget.js in a banner above the composer, never as a chat message: Chainlit
    shows a team's starters only while the chat has no message. Sent every time, so that a chat with
    nothing to say clears the banner of the one before. The offline model has its own banner
    (GET /chorus/status)."""
    notices = [{"text": n.text, "level": n.level} for n in session.notices() if n.code != "offline_model"]
    await cl.context.emitter.send_window_message({"chorus": "notices", "notices": notices})


async def start() -> None:
    session = await open_chat()
    if session is None:
        return
    session.start_preparing()  # while the user types: the first reply starts sooner


async def on_message(message: cl.Message | None) -> None:
    if message is None:  # Chainlit passes None when an edited message cannot be found
        return
    if message.command == EXPORT_COMMAND:
        await export(message)
        return
    if not isinstance(cl.user_session.get("chorus"), ChatSession):  # a first message before the chat started
        await prepare_chat()
    try:
        session = session_of_chat()
    except ChorusError as exc:
        await cl.ErrorMessage(content=f"{exc} Start a new chat once this is fixed.", author=SYSTEM).send()
        return
    if message.command == MEMORIES_COMMAND:
        await show_memories()
        return
    if message.command == MAP_COMMAND:
        await show_conversation_map()
        return
    web = current()
    queue = line()
    before, mine, stops = queue.join()  # the message's place, taken before anything is awaited
    try:
        if web.history:
            # Commit the user's message before any model is called (Chainlit stores it in the background).
            try:
                await get_data_layer().create_step(message.to_dict())
            except NotYours:
                await cl.ErrorMessage(content="This message names a message of another conversation, so it was not "
                                              "sent. Reload the page and send it again.", author=SYSTEM).send()
                return
            if not cl.user_session.get("profile_saved"):
                # Chainlit saves the chat profile only when the socket closes; a crash would forget it.
                await get_data_layer().update_thread(cl.context.session.thread_id,
                                                     metadata={"chat_profile": session.spec.title})
                cl.user_session.set("profile_saved", True)
        refusal = await limiter(web.chorus.settings).hit("messages", sender())
        if refusal is not None:  # the message is kept (stored, on the page); it is not answered
            await cl.Message(content=refusal.message("messages") + " Your message is kept above: send it again "
                                                                   "then, or edit it to have it answered.",
                             author=SYSTEM).send()
            return
        if before is not None and not before.done() and not await wait_in_line(before, queue, stops):
            return
        await answer(session, message)
    finally:
        queue.leave(before, mine)


def sender() -> str:
    """Who the chat's messages count against: the signed-in user, else the visitor's address."""
    user = cl.user_session.get("user")
    identifier = getattr(user, "identifier", None)
    if identifier:
        return str(identifier)
    return "address:" + (socket_address() or "unknown")


def socket_address() -> str | None:
    """The chat's client address, as its socket's connection saw it (after uvicorn's proxy headers);
    the socket library's own REMOTE_ADDR is always 127.0.0.1."""
    environ = getattr(cl.context.session, "environ", None) or {}
    scope = environ.get("asgi.scope") or {}
    client = scope.get("client") if isinstance(scope, dict) else None
    return str(client[0]) if client else None


async def answer(session: ChatSession, message: cl.Message) -> None:
    """Run the turn for ``message`` and show it on the page (registered while it runs, for a stop)."""
    web = current()
    task = asyncio.current_task()
    if web.draining is not None or task is None:  # the server is stopping: the message is kept, unanswered
        return
    web.running[task] = session
    try:
        await _run_and_show(session, message)
    finally:
        web.running.pop(task, None)


async def _run_and_show(session: ChatSession, message: cl.Message) -> None:
    try:
        attachments = await read_attachments(message.elements or [], current().chorus.settings)
    except AttachmentError as exc:
        await cl.ErrorMessage(content=f"{exc}. Send the message again without it.", author=SYSTEM).send()
        return
    await show_turn(session, message.content or "", message_id=message.id, attachments=attachments,
                    turn_id=uuid.uuid4().hex)


async def show_turn(session: ChatSession, text: str, *, message_id: str | None, turn_id: str,
                    attachments: Sequence[Attachment] = ()) -> None:
    """Run a turn with ``text`` and draw its events on the page."""
    renderer = Renderer(persist_every=PARTIAL_REPLY_EVERY_S if current().history else None, turn_id=turn_id,
                        message=text, message_id=message_id)
    turn = run_turn(session, text, message_id=message_id, attachments=attachments, turn_id=turn_id)
    try:
        # aclosing: a stop that lands while the page is drawing must still end the turn (and its lock).
        async with contextlib.aclosing(turn) as events:
            async for event in events:
                await renderer.show(event)
    finally:
        await renderer.close()  # the stop button cancels this task: finish the cut-off bubbles


async def on_stop() -> None:
    line().stops += 1  # messages waiting behind the running turn are not answered either
    session = cl.user_session.get("chorus")
    if isinstance(session, ChatSession):
        session.stop()
