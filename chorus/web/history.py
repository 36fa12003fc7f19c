"""With history on (an account exists, or the widget is on): logins and logouts, the SQL data
layer, feedback on the turn's trace, reopening a conversation, and refusing ended logins."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import chainlit as cl
from chainlit.data import get_data_layer
from starlette.requests import Request
from starlette.responses import Response

from chorus.store.accounts import account_exists, authenticate
from chorus.turn import ChatSession
from chorus.web import approvals, chainlit_fixes, logins
from chorus.web.audit import note
from chorus.web.context import SYSTEM, current
from chorus.web.handlers import open_chat

log = logging.getLogger("chorus.app")


def register() -> None:
    """The handlers of logins and history (called only with history on)."""
    engine = current().engine
    cl.password_auth_callback(login)
    logins.install(engine)  # Chainlit's token check also refuses ended logins
    logins.guard_messages(engine)  # and so does the socket, before a message is stored
    cl.on_logout(logout)
    cl.data_layer(data_layer)
    cl.on_feedback(feedback_to_trace)
    cl.on_chat_resume(resume)


async def login(username: str, password: str) -> cl.User | None:
    name = username.strip()
    if await authenticate(current().engine(), username, password):
        await note("login", name, {"method": "password"}, who=name)
        return cl.User(identifier=name, metadata=logins.login_claims(logins.PASSWORD))
    # The name tried is kept only when it is an account's: a password typed into the name field
    # must not stay in a log that cannot be erased.
    known = await account_exists(current().engine(), name) if name else False
    await note("login_failed", name if known else "", {"method": "password", "known_account": known},
               who="anonymous")
    return None


async def logout(request: Request, response: Response) -> dict[str, bool]:
    """Logging out ends this login for good: its token is refused from now on, on every worker."""
    from chorus.web.guard import request_token

    try:
        await logins.revoke(current().engine(), request_token(request.scope))
    except Exception as exc:
        log.error("could not end a login at logout: %s", exc)
    await note("logout")
    return {"success": True}

def data_layer() -> Any:
    from chorus.store.datalayer import ChorusDataLayer

    web = current()
    memory = web.chorus.memory
    layer = ChorusDataLayer(web.database_url, files=web.files, max_message_chars=web.chorus.settings.max_message_chars,
                            on_deleted=memory.forget_conversation_files if memory is not None else None)
    # A deleted conversation's open pages are told and start afresh; nothing brings it back.
    return chainlit_fixes.forget_deleted_threads(layer, on_detach=leave_deleted_thread)

def leave_deleted_thread(state: dict[str, Any]) -> None:
    """A chat whose conversation was deleted while open: its team stops answering, and its next
    message opens a new session on a new conversation."""
    session = state.pop("chorus", None)
    if isinstance(session, ChatSession):
        session.stop()
    state.pop("profile_saved", None)

async def feedback_to_trace(feedback: Any) -> None:
    """Thumbs up/down on a reply (stored by Chainlit) also becomes MLflow feedback from that
    user on the turn's trace."""
    tracer = current().chorus.tracer
    layer = get_data_layer()
    if tracer is None or layer is None:
        return
    user = str(getattr(cl.user_session.get("user"), "identifier", "") or "")
    turn_id = await layer.turn_of_step(feedback.forId, owner=user) if user else None
    if turn_id is None:  # not a reply of this user's: Chainlit stored it, the trace is not theirs
        return
    try:
        if not await asyncio.to_thread(tracer.log_feedback, turn_id, user, feedback.value == 1,
                                       feedback.comment):
            log.info("no trace of turn %s for the feedback of %s", turn_id, user)
    except Exception as exc:
        log.warning("could not attach feedback to the trace of turn %s: %s", turn_id, exc)

async def resume(thread: Any) -> None:
    """Reopen a thread from the history: the page shows its messages; the team gets its memory back."""
    reconnect = isinstance(cl.user_session.get("chorus"), ChatSession)  # a socket blip, not a reopen
    await complete_for_page(thread)
    session = await open_chat()
    if session is None or reconnect:
        return
    await approvals.take_over(session)  # another page's turn waiting for an answer: this page's now
    if not await session.resume():
        await _say_on_resume(thread, "ℹ️ The team has no saved memory of this conversation; it starts afresh "
                                     "from here.")
    elif session.interrupted is not None and session.built is not None:  # a restart cut a pipeline short
        members = [m.name for m in session.built.members]
        await _say_on_resume(thread, "ℹ️ " + session.interrupted.notice(members))
    await approvals.show_pending(session, thread)


async def _say_on_resume(thread: Any, text: str) -> None:
    """A message from Chorus as a thread reopens. Chainlit sends the page the thread it read before
    ``on_chat_resume`` once the hook returns, and the page replaces what it shows with it: a message
    sent during the hook goes into that thread too, or the page would drop it."""
    message = cl.Message(content=text, author=SYSTEM)
    await message.send()
    steps = thread.get("steps") if isinstance(thread, dict) else None
    if isinstance(steps, list):
        steps.append(message.to_dict())

async def complete_for_page(thread: Any) -> None:
    """Put back what Chainlit's SQL data layer leaves out of a thread it reopens, before the page
    gets it (Chainlit sends this same dict after ``resume``): the metadata as an object (SQLite
    gives JSON text, so the page missed the chat profile and showed the default team in the
    header) and each message's composer command (an Export request came back as an empty bubble)."""
    from chorus.store.export import step_commands

    metadata = thread.get("metadata")
    if isinstance(metadata, str):
        try:
            thread["metadata"] = json.loads(metadata) or {}
        except ValueError:
            thread["metadata"] = {}
    try:
        commands = await step_commands(current().engine(), str(thread.get("id")))
    except Exception as exc:  # the messages still show, without their command tags
        log.warning("could not read the commands of conversation %s: %s", thread.get("id"), exc)
        return
    for step in thread.get("steps") or []:
        if step.get("id") in commands:
            step["command"] = commands[step["id"]]
