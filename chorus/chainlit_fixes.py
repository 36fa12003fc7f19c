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
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

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
