"""Fixes to Chainlit that the page needs, applied once by ``chorus.app``.

**A socket that reconnects mid-reply.** When a page's socket drops and comes back with the same
session (a network blip), Chainlit's ``connection_successful`` tells the page the team is idle
(``task_end``) while the reply is still streaming, and, for a conversation opened with a thread
id, "resumes" it again: it replaces the live user session with the copy stored in the thread's
metadata (the running turn's state with it) and calls ``on_chat_resume`` a second time.
:func:`apply` re-registers that handler so that a reconnect of a page that is still open just
carries on: the page is told whether a message is being answered, and nothing else happens.
Chainlit answers an edited message inside its socket handler without naming it the session's
running task; the fix names it, so reconnects (and the stop button) see it too.

**A burst of connections.** Chainlit builds each socket's session with ``get_config``, which, when
the app has chat profiles, runs ``set_chat_profiles`` in a nested ``loop.run_until_complete``
(nest_asyncio). Inside it the loop runs every other ready callback, including the next socket's
connect, which nests again: when a few dozen pages connect in the same instant (a reconnect
storm after a restart) the stack passes Python's recursion limit and those sockets fail with
``RecursionError``. :func:`apply` computes a session's profile overrides without a nested loop:
the profiles callback is run to completion on the spot when it never waits (Chorus's does not);
one that must wait leaves the session on the global configuration, with a warning.

**Blocking sleeps under load.**
Chainlit's ``Step`` and ``Message`` constructors call ``time.sleep(0.001)``, so that steps created
one after another get different ``created_at`` timestamps. That call blocks the whole event loop:
every chat served by the process stops for a millisecond each time any chat creates a message
or a step. A turn creates several (the user's message, each reply, tool steps, the usage step),
which made it about half of a turn's cost with 200 chats streaming at once (Chainlit PR #1374
proposed the same fix upstream).

:func:`apply` keeps the guarantee the sleep gave, without sleeping: in those two modules,
``utc_now`` returns a timestamp that is strictly later than the previous one, and ``time.sleep``
no longer waits for intervals of a millisecond or less. Chainlit is otherwise untouched.

**A deleted conversation.** Chainlit deletes a thread's rows and nothing else: a page that still
has the conversation open keeps it on screen, and its session goes on writing to the thread (its
next message, the reply in progress, the session Chainlit saves when the socket closes), which
brings the thread back as an "Untitled Conversation". :func:`forget_deleted_threads` makes the
data layer's delete also detach every session of this process from the thread (a new thread id
for whatever the page says next) and tell its page, which says so and opens a new chat
(chorus.js); late writes to the deleted thread are dropped. A page that opens a deleted thread's
address gets the same, instead of Chainlit's "Couldn't resume chat".

**Log noise.** Chainlit warns "Translated markdown file for en-US not found" on every page load
when the welcome text exists only as ``chainlit.md``, which is how Chorus ships it (and how a
fresh checkout's ``chorus run`` creates it): that fallback is the intended behaviour, so the
warning is dropped (kept at DEBUG when Chainlit's logger is at DEBUG).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)
DELETED_EVENT = {"chorus": "deleted"}  # the window message that tells a page (chorus.js) its conversation is gone

_last: datetime | None = None


def utc_now() -> str:
    """Chainlit's ``utc_now``, strictly increasing within this process (ISO 8601, microseconds, Z)."""
    global _last
    now = datetime.now(UTC).replace(tzinfo=None)
    if _last is not None and now <= _last:
        now = _last + timedelta(microseconds=1)
    _last = now
    return now.isoformat(timespec="microseconds") + "Z"


class _TimeWithoutShortSleeps(ModuleType):
    """The ``time`` module as chainlit.step and chainlit.message see it."""

    def __init__(self) -> None:
        super().__init__("time")

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds > 0.001:
            time.sleep(seconds)


def apply() -> None:
    """Patch chainlit.step, chainlit.message and the socket's reconnect handler (idempotent)."""
    import importlib

    _keep_reconnects_live()
    _config_without_nested_loops()
    _quiet_markdown_fallback()

    # By name: ``chainlit.step`` the attribute is the decorator, not the module.
    for module in (importlib.import_module("chainlit.step"), importlib.import_module("chainlit.message")):
        if getattr(module, "time", None) is time:
            module.time = _TimeWithoutShortSleeps()  # type: ignore[attr-defined]
        if hasattr(module, "utc_now"):
            module.utc_now = utc_now  # type: ignore[attr-defined]


def _config_without_nested_loops() -> None:
    from chainlit.session import WebsocketSession

    if getattr(WebsocketSession.get_config, "__chorus_fix__", False):
        return

    def get_config(self: Any) -> Any:
        from chainlit.config import config as global_config

        if not self.chat_profile:
            return global_config
        if getattr(self, "config", None):
            return self.config
        cfg = global_config
        make_profiles = global_config.code.set_chat_profiles
        if make_profiles:
            profiles = _run_without_waiting(make_profiles(self.user, self.language))
            current = next((p for p in profiles or [] if p.name == self.chat_profile), None)
            overrides = getattr(current, "config_overrides", None)
            if overrides:
                cfg = global_config.with_overrides(overrides)
        self.config = cfg
        return cfg

    get_config.__chorus_fix__ = True  # type: ignore[attr-defined]
    WebsocketSession.get_config = get_config  # type: ignore[method-assign]


def _run_without_waiting(coro: Any) -> Any:
    """The result of a coroutine that completes without waiting on anything; None (and a warning)
    for one that waits, which is then closed."""
    import logging

    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    except Exception as exc:
        logging.getLogger(__name__).warning("chat profiles for a new session failed: %s", exc)
        return None
    coro.close()
    logging.getLogger(__name__).warning(
        "set_chat_profiles waits on I/O: a new session's profile overrides are not applied")
    return None


def _keep_reconnects_live() -> None:
    from chainlit.context import init_ws_context
    from chainlit.server import sio
    from chainlit.session import WebsocketSession
    from chainlit.socket import _get_token

    handlers = sio.handlers.setdefault("/", {})
    edit = handlers.get("edit_message")
    if edit is not None and not getattr(edit, "__chorus_fix__", False):
        async def edit_message(sid: str, payload: Any) -> Any:
            # Chainlit answers an edit inside this handler without naming it the session's running
            # task: name it, so that a reconnect sees the reply is still running (and stop stops it).
            session = WebsocketSession.get(sid)
            if session is not None:
                session.current_task = asyncio.current_task()
            return await edit(sid, payload)

        edit_message.__chorus_fix__ = True  # type: ignore[attr-defined]
        handlers["edit_message"] = edit_message
    original = handlers.get("connection_successful")
    if original is None or getattr(original, "__chorus_fix__", False):
        return

    async def connection_successful(sid: str) -> Any:
        session = WebsocketSession.get(sid)
        if session is None or not (session.restored and session.has_first_interaction):
            if session is not None and not session.restored:
                await _tell_if_deleted(session)
            return await original(sid)  # a new page, or one that had not said anything yet
        # The same page, back after a blip: its conversation goes on where it was, with the login
        # the page holds now (Chainlit checked at connect that it is the same user's).
        token = _get_token(session.environ)
        if token:
            session.token = token
        context = init_ws_context(session)
        task = session.current_task
        if task is not None and not task.done():
            await context.emitter.task_start()  # type: ignore[no-untyped-call]
        else:
            await context.emitter.task_end()  # type: ignore[no-untyped-call]
        return None

    connection_successful.__chorus_fix__ = True  # type: ignore[attr-defined]
    handlers["connection_successful"] = connection_successful


class _MarkdownFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Translated markdown file for "):
            return True
        if not logging.getLogger("chainlit").isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _quiet_markdown_fallback() -> None:
    logger = logging.getLogger("chainlit")
    if not any(isinstance(f, _MarkdownFallback) for f in logger.filters):
        logger.addFilter(_MarkdownFallback())


# -- deleted conversations ----------------------------------------------------------------------

_DELETED_KEPT = 10_000
_deleted: OrderedDict[str, None] = OrderedDict()  # threads deleted by this process, newest last


def forget_deleted_threads(layer: Any, on_detach: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Make ``layer`` (Chainlit's data layer) finish a thread's deletion off the database too.

    After its ``delete_thread``: every session of this process on that thread is detached from it
    (``on_detach`` gets the session's user-session dict, for the app to drop what it keeps for the
    thread) and its page is sent :data:`DELETED_EVENT`; and from then on, writes that name the
    thread (a reply that was still being sent, the session Chainlit saves at disconnect) are
    dropped instead of creating it again. Returns ``layer``; idempotent.
    """
    if getattr(layer, "chorus_forgets_deleted", False):
        return layer
    delete = layer.delete_thread

    async def delete_thread(thread_id: str) -> None:
        await delete(thread_id)
        _deleted[str(thread_id)] = None
        while len(_deleted) > _DELETED_KEPT:
            _deleted.popitem(last=False)
        await _detach_sessions(str(thread_id), on_detach)

    layer.delete_thread = delete_thread
    # Marked the moment its row is gone (before the rest of the deletion finishes), so that a write
    # arriving meanwhile (the page's session saved at disconnect) cannot bring it back.
    layer.chorus_thread_gone = lambda thread_id: _deleted.__setitem__(str(thread_id), None)
    layer.update_thread = _unless_deleted(layer.update_thread, lambda *a, **k: a[0] if a else k.get("thread_id"))
    for name in ("create_step", "update_step"):
        setattr(layer, name, _unless_deleted(getattr(layer, name), lambda step, *a, **k: step.get("threadId")))
    layer.create_element = _unless_deleted(layer.create_element,
                                           lambda element, *a, **k: getattr(element, "thread_id", None))
    layer.chorus_forgets_deleted = True
    return layer


def _unless_deleted(write: Callable[..., Any], thread_of: Callable[..., Any]) -> Callable[..., Any]:
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        thread_id = thread_of(*args, **kwargs)
        if thread_id is not None and str(thread_id) in _deleted:
            log.debug("dropped a write to the deleted conversation %s", thread_id)
            return None
        return await write(*args, **kwargs)

    return guarded


async def _detach_sessions(thread_id: str, on_detach: Callable[[dict[str, Any]], None] | None) -> None:
    from chainlit.chat_context import chat_contexts
    from chainlit.session import ws_sessions_id
    from chainlit.user_session import user_sessions

    live: list[Any] = list(ws_sessions_id.values())
    for session in live:
        if session.thread_id != thread_id:
            continue
        _detach(session)
        chat_contexts.pop(session.id, None)
        state = user_sessions.get(session.id)
        if on_detach is not None and state is not None:
            try:
                on_detach(state)
            except Exception:
                log.exception("could not detach a chat from its deleted conversation %s", thread_id)
        try:
            await session.emit("window_message", DELETED_EVENT)
        except Exception as exc:  # the page has gone: nothing to tell
            log.debug("could not tell a page its conversation was deleted: %s", exc)


def _detach(session: Any) -> None:
    """The session's next message starts a new conversation; nothing is saved to the old one."""
    session.thread_id = str(uuid.uuid4())
    session.thread_id_to_resume = None
    session.has_first_interaction = False


async def _tell_if_deleted(session: Any) -> None:
    """A page opening a conversation that does not exist (deleted; Chainlit would say "Couldn't
    resume chat: Thread not found") is told so, and opens a new chat (chorus.js reloads it)."""
    thread_id = session.thread_id_to_resume
    if not thread_id or session.has_first_interaction or session.user is None:
        return
    from chainlit.data import get_data_layer

    layer = get_data_layer()  # type: ignore[no-untyped-call]
    if layer is None:
        return
    if str(thread_id) not in _deleted:
        try:
            await layer.get_thread_author(thread_id)
            return  # it exists: Chainlit resumes it
        except ValueError:
            pass  # Chainlit's data layer: no such thread
        except Exception as exc:  # the database, not the thread: let Chainlit try and report
            log.warning("could not check whether conversation %s exists: %s", thread_id, exc)
            return
    # Not resumed; the page reloads as a new chat, leaving this session without a first message
    # (so Chainlit saves nothing of it). One that stays anyway writes to a new thread when this
    # process deleted the old one (whose writes are dropped), else to the id it asked for, as before.
    if str(thread_id) in _deleted:
        _detach(session)
    session.thread_id_to_resume = None
    await session.emit("window_message", DELETED_EVENT)
