"""The Chainlit page: maps Chainlit callbacks to ``run_turn`` and turn events to the page.

Kept thin on purpose: every decision about a turn lives in :mod:`chorus.turn`.
This file lives inside the package (not at the repository root) so that
``chorus run`` serves the page from an installed wheel too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import chainlit as cl
from chainlit.auth import set_auth_cookie
from chainlit.config import APP_ROOT, config
from chainlit.data import get_data_layer
from chainlit.server import app as chainlit_app
from chainlit.server import sio
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chorus import chainlit_fixes, sessions
from chorus.attachments import AttachmentError
from chorus.auth import ensure_auth_secret
from chorus.avatars import Avatars
from chorus.events import (
    DoneEvent,
    ErrorEvent,
    MessageEvent,
    NoticeEvent,
    RetrievalEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
)
from chorus.logs import quiet_autogen
from chorus.store import database_url, make_engine, upgrade
from chorus.store.accounts import accounts_exist, authenticate
from chorus.store.caller import NotYours
from chorus.store.checkpoints import CheckpointStore
from chorus.store.files import ROUTE, LocalFileStore, files_root
from chorus.store.usage import UsageLedger
from chorus.turn import ChatSession, Chorus, ChorusError, run_turn
from chorus.webfiles import UploadLimit, configure_uploads, file_route, read_attachments
from chorus.webguard import (
    CallerGuard,
    ImageGuard,
    OriginGuard,
    PageHardening,
    SecureCookies,
    TrustedProxies,
    neutralise_images,
)
from chorus.widget import WidgetTokenError, ensure_widget_secret, is_widget_identity, read_token

log = logging.getLogger("chorus.app")
quiet_autogen()
chainlit_fixes.apply()  # no blocking sleep each time a message or step is made

CHORUS = Chorus.load()
for _problem in CHORUS.problems():
    log.error("%s", _problem)
if CHORUS.tracer is not None:
    CHORUS.tracer.prepare()  # MLflow's import and store set-up happen off the start-up path
if CHORUS.memory is not None:
    # Opens Chroma, ingests knowledge/ on first start and loads the embedding model, without
    # delaying the page: a turn that comes first simply waits for what it needs.
    CHORUS.memory.start_preparing()

# Storage: migrate at start-up; history and logins switch on once an account exists
# (`chorus users add NAME`), so a first start needs no set-up at all.
DATABASE_URL = database_url(CHORUS.settings)
upgrade(DATABASE_URL)  # done once per process: `chorus run` has usually migrated already
# The widget (chorus.widget): on when CHORUS_ALLOWED_ORIGINS names the sites that embed it.
# Its users sign in with tokens, so logins (and with them history) are on too.
WIDGET_ORIGINS = CHORUS.settings.allowed_origin_list()
PROXIES = CHORUS.settings.trusted_proxy_networks()  # whose X-Forwarded-* headers are believed
if PROXIES:
    os.environ["FORWARDED_ALLOW_IPS"] = ""  # uvicorn (started after this import) leaves them to TrustedProxies
WIDGET_SECRET = ensure_widget_secret(CHORUS.settings.home) if WIDGET_ORIGINS else None
HISTORY = accounts_exist(DATABASE_URL) or bool(WIDGET_ORIGINS)
_engine: AsyncEngine | None = None


def _store_engine() -> AsyncEngine:
    """The server's engine, made on first use inside the server's event loop."""
    global _engine
    if _engine is None:
        _engine = make_engine(DATABASE_URL)
    return _engine


def _checkpoints() -> CheckpointStore | None:
    return CheckpointStore(_store_engine()) if HISTORY else None

config.ui.name = "Chorus"
config.ui.custom_js = "/chorus/static/chorus.js"
config.ui.cot = "full"
config.features.edit_message = True  # run_turn rewinds the team to before the edited message
configure_uploads(CHORUS.settings)
if not any(getattr(m.cls, "__name__", "") == UploadLimit.__name__ for m in chainlit_app.user_middleware):
    # Once per process: `chorus run --watch` re-runs this module in a server that has started.
    # Innermost (inside Chainlit's CORS, so a refusal still carries its headers): names the caller
    # of each request for the data layer's ownership checks.
    chainlit_app.user_middleware.append(Middleware(CallerGuard))
    chainlit_app.add_middleware(UploadLimit, max_mb=CHORUS.settings.upload_max_mb, settings=CHORUS.settings)
    chainlit_app.add_middleware(PageHardening, frame_ancestors=WIDGET_ORIGINS)
    chainlit_app.add_middleware(SecureCookies)
    chainlit_app.add_middleware(OriginGuard, allowed=WIDGET_ORIGINS)  # before anything answers
    if PROXIES:  # outermost: forwarded headers are believed from these proxies only
        chainlit_app.add_middleware(TrustedProxies, proxies=PROXIES)
    for _middleware in chainlit_app.user_middleware:
        if getattr(_middleware.cls, "__name__", "") == "CORSMiddleware":
            # Chainlit allows every origin, with credentials; only the widget's sites may.
            _middleware.kwargs["allow_origins"] = list(WIDGET_ORIGINS)
# Over-long messages must reach run_turn to be refused with a clear message; python-socketio's
# default 1 MB frame limit would drop the connection instead.
sio.eio.max_http_buffer_size = max(8 * 1024 * 1024, 4 * CHORUS.settings.max_message_chars + 65_536)

SYSTEM = "Chorus"
PARTIAL_REPLY_EVERY_S = 1.5
QUEUED_NOTE = "⏳ Queued: the team answers this as soon as it has finished with your previous message."
STOPPED_NOTE = "⏹️ Stopped before the team got to this message: send it again to ask."
STREAM_FLUSH_S = 0.04  # streamed text is sent at most this often per reply (_Stream)
INTERRUPTED_MARK = "\n\n⚠️ _Interrupted: the server stopped before this reply was finished._"
OFFLINE_BANNER = (
    "Offline model in use: answers come from Chorus's deterministic local model, which routes "
    "questions and calls tools but does not understand free-form requests. Set CHORUS_MODEL to a "
    "litellm model string and restart for a real model."
)
STATIC = Path(__file__).with_name("static")


# Stopping (SIGTERM, Ctrl+C): from the signal, the process has SHUTDOWN_BUDGET_S to end, within the
# 10 s a rolling restart allows. At the signal the running turns are stopped (as by the stop button,
# so each records its cost, keeps what was said and saves the team's state), while uvicorn stops
# accepting and closes the connections; then Chainlit's last writes and the traces are waited for.
SHUTDOWN_BUDGET_S = 8.0
TURN_DRAIN_S = 4.0  # of which the stopped turns may take this long to finish their bookkeeping
_running: dict[asyncio.Future[Any], ChatSession] = {}  # the task answering each turn now
_draining: asyncio.Task[None] | None = None  # set once stopping has begun: no new turn starts
_drain_deadline = 0.0
# Chainlit stores messages and steps in tasks of their own: the data layer methods that write.
_WRITES = frozenset({"create_step", "update_step", "delete_step", "create_element", "update_thread"})


@cl.on_app_startup
async def on_app_startup() -> None:
    """Stop the running turns at the signal itself, not once uvicorn has closed every connection."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous) or getattr(previous, "chorus_drains", False):
            continue

        def on_signal(sig: int, frame: Any, previous: Any = previous) -> None:
            previous(sig, frame)  # uvicorn's: stop accepting, close the connections, then shut down
            loop.call_soon_threadsafe(_begin_draining)

        on_signal.chorus_drains = True  # type: ignore[attr-defined]
        signal.signal(signum, on_signal)


def _begin_draining() -> None:
    global _draining, _drain_deadline
    if _draining is None:
        _drain_deadline = time.monotonic() + SHUTDOWN_BUDGET_S
        _draining = asyncio.ensure_future(_drain_turns())


async def _drain_turns() -> None:
    """Stop every running turn and wait (bounded) until each has recorded what it did."""
    running = dict(_running)
    if not running:
        return
    log.warning("stopping: %d turn(s) still answering are cut short; what they said and cost is kept", len(running))
    until = time.monotonic() + TURN_DRAIN_S
    pending = set(running)
    while pending and time.monotonic() < until:
        for task in pending:
            running[task].stop()  # again each time: a turn that was still starting is stopped once it runs
        _, pending = await asyncio.wait(pending, timeout=0.1)
    if pending:  # stuck past their stop (a tool in a thread, say): cancel them, as a second stop would
        log.warning("stopping: %d turn(s) did not stop within %.0f s and are cancelled", len(pending), TURN_DRAIN_S)
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=max(0.1, min(1.0, _drain_deadline - time.monotonic() - 2)))


def _pending_writes() -> list[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()
            and getattr(t.get_coro(), "__qualname__", "").rpartition(".")[2] in _WRITES]


@cl.on_app_shutdown
async def on_app_shutdown() -> None:
    """`chorus run` stops: running turns end and record, their messages and traces are written, all
    within SHUTDOWN_BUDGET_S of the signal (Chainlit then closes the data layer and exits)."""
    _begin_draining()  # already begun at a signal; not when the server stops otherwise
    assert _draining is not None
    await asyncio.wait([_draining], timeout=max(0.0, _drain_deadline - time.monotonic() - 1.5))
    writes = _pending_writes()
    if writes:
        await asyncio.wait(writes, timeout=max(0.1, _drain_deadline - time.monotonic() - 1.0))
    if CHORUS.tracer is not None:
        # The rest of the budget, unless the operator chose how long traces may hold a stop up.
        configured = CHORUS.settings.trace_flush_timeout
        wait = configured if configured is not None else max(0.5, _drain_deadline - time.monotonic())
        await asyncio.to_thread(CHORUS.tracer.close, wait)


async def _static(request: Request) -> Response:
    path = (STATIC / request.path_params["name"]).resolve()
    if path.parent != STATIC.resolve() or not path.is_file():
        return Response(status_code=404)
    return FileResponse(path)


async def _status(request: Request) -> Response:
    """What the page's banner shows: which teams (by chat profile name) use the offline model."""
    teams = {spec.title: CHORUS.uses_offline_model(spec.name) for spec in CHORUS.catalog.teams.values()}
    return JSONResponse({"default": CHORUS.catalog.default.title, "offline": teams, "notice": OFFLINE_BANNER})


# Chainlit's catch-all route would answer first: put ours ahead of it.
chainlit_app.router.routes.insert(0, Route("/chorus/static/{name}", _static))
chainlit_app.router.routes.insert(0, Route("/chorus/status", _status))


async def _logo(request: Request) -> Response:
    theme = "light" if request.query_params.get("theme") == "light" else "dark"
    return FileResponse(STATIC / f"logo_{theme}.svg", media_type="image/svg+xml")


chainlit_app.router.routes.insert(0, Route("/logo", _logo))
# Each agent's own avatar where the page and the widget ask for it (Chainlit's route, same path,
# would answer every author with one picture); Chorus's own messages keep the Chorus mark.
_avatars = Avatars(lambda: CHORUS.registry.agents, system=SYSTEM, public=Path(APP_ROOT) / "public" / "avatars")
chainlit_app.router.routes.insert(0, Route("/avatars/{avatar_id:str}", _avatars.endpoint))


async def _trace(request: Request) -> Response:
    """A reply's link to its trace: finds the turn's MLflow trace and sends the browser to the UI."""
    turn_id = request.path_params["turn_id"]
    tracer = CHORUS.tracer
    trace_id = None
    if tracer is not None and turn_id.isalnum():
        try:
            trace_id = await asyncio.to_thread(tracer.trace_id_of, turn_id)
        except Exception as exc:
            log.warning("could not look up the trace of turn %s: %s", turn_id, exc)
    if tracer is None or trace_id is None:
        return Response("No trace for this answer: tracing is off, the tracking store is unreachable, or the "
                        "trace is still being written (try again in a moment).", status_code=404)
    # Where the UI is now (CHORUS_MLFLOW_UI_URL, or what a running `chorus mlflow` recorded): a file read.
    base = await asyncio.to_thread(tracer.ui_url, request.url.hostname)
    return RedirectResponse(tracer.ui_link(trace_id, base))


chainlit_app.router.routes.insert(0, Route("/chorus/trace/{turn_id}", _trace))

NEW_CHAT_KEPT = ("Your current conversation is kept: reopen it from the history in the sidebar at any time. "
                 "Start a new chat?")
_LANGUAGE = re.compile(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,4})?(-[a-zA-Z0-9]{2,8})?(-x-[a-zA-Z0-9]{1,8})?")  # Chainlit's


async def _translations(request: Request) -> Response:
    """Chainlit's texts for the page (its own route's answer), except that with history on the
    new-chat dialog says the truth: the current conversation is kept, where Chainlit's text says
    it is cleared. In English whatever the language, as are Chorus's other texts on the page."""
    language = request.query_params.get("language", "en-US")
    if not _LANGUAGE.fullmatch(language):
        return JSONResponse({"detail": "Invalid language code."}, status_code=422)
    translation = await asyncio.to_thread(config.load_translation, config.ui.language or language)
    dialog = translation.get("navigation", {}).get("newChat", {}).get("dialog")
    if HISTORY and isinstance(dialog, dict):
        dialog["description"] = NEW_CHAT_KEPT
    return JSONResponse({"translation": translation})


chainlit_app.router.routes.insert(0, Route("/project/translations", _translations))


@cl.set_chat_profiles
async def chat_profiles(user: cl.User | None = None, language: str | None = None) -> list[cl.ChatProfile]:
    """One chat profile per team; the default team first. A widget embedded for one team shows
    only that team."""
    profiles = []
    only = _widget_team(user)
    for spec in CHORUS.catalog.teams.values():
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

    members, _ = resolve_members(CHORUS.team(team), CHORUS.registry)
    starters = []
    for member in members:
        examples = list(member.examples) + [
            e for t in member.tools if t in CHORUS.registry.tools for e in CHORUS.registry.tools[t].examples
        ]
        if examples:
            starters.append(cl.Starter(label=examples[0], message=examples[0]))
    return starters[:4]


def _session() -> ChatSession:
    """This chat's session, opened on first use (a message can arrive while on_chat_start runs).

    Synchronous on purpose: no other handler can interleave, so a chat never gets two sessions.
    Raises ChorusError for an unknown team or model.
    """
    session = cl.user_session.get("chorus")
    if isinstance(session, ChatSession):
        return session
    user = cl.user_session.get("user")
    team = _widget_team(user) or cl.user_session.get("chat_profile")
    session = CHORUS.open_session(
        team,
        user_id=getattr(user, "identifier", None) or "anonymous",
        thread_id=cl.context.session.thread_id,
        checkpoints=_checkpoints(),
        ledger=UsageLedger(_store_engine()),
    )
    cl.user_session.set("chorus", session)
    return session


async def _widget_login(request: Request) -> Response:
    """The widget's sign-in (Chainlit's copilot posts its ``accessToken`` here): a host site's
    widget token becomes a Chorus session cookie for ``widget:<user>``; anything else is refused."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if WIDGET_SECRET is None:
        return JSONResponse({"detail": "The widget is off (set CHORUS_ALLOWED_ORIGINS)."}, status_code=401)
    if scheme.lower() != "bearer" or not token.strip():
        return JSONResponse({"detail": "Send the widget token as 'Authorization: Bearer <token>'."},
                            status_code=401)
    try:
        visitor = read_token(token.strip(), secret=WIDGET_SECRET)
    except WidgetTokenError as exc:
        log.warning("widget sign-in refused from %s: %s", request.headers.get("origin", "?"), exc)
        return JSONResponse({"detail": str(exc)}, status_code=401)
    if visitor.team and visitor.team not in CHORUS.catalog.teams:
        return JSONResponse({"detail": f"The token names an unknown team {visitor.team!r}."}, status_code=401)
    user = cl.User(identifier=visitor.identifier, display_name=visitor.name,
                   metadata=sessions.login_claims(sessions.WIDGET, team=visitor.team))
    layer = get_data_layer()
    if layer is not None:
        await layer.create_user(user)
    response = JSONResponse({"success": True})
    # The session lasts CHORUS_WIDGET_SESSION_MINUTES (or the token's life), not Chainlit's 15 days.
    expires_at = sessions.widget_session_expiry(visitor.expires_at, CHORUS.settings.widget_session_minutes)
    set_auth_cookie(request, response, sessions.widget_session_token(user.to_dict(), expires_at))
    _cap_cookie_age(response, max(1, expires_at - int(time.time())))
    return response


def _cap_cookie_age(response: Response, seconds: int) -> None:
    """Make the login cookie set on ``response`` expire in ``seconds``."""
    capped = []
    for key, value in response.raw_headers:
        if key.lower() == b"set-cookie" and b"max-age=" in value.lower():
            value = re.sub(rb"(?i)max-age=\d+", b"Max-Age=%d" % seconds, value)
        capped.append((key, value))
    response.raw_headers[:] = capped


chainlit_app.router.routes.insert(0, Route("/auth/jwt", _widget_login, methods=["POST"]))


def _widget_team(user: Any) -> str | None:
    """The team a widget user's token chose (None for everyone else)."""
    if user is None or not is_widget_identity(str(getattr(user, "identifier", ""))):
        return None
    team = (getattr(user, "metadata", None) or {}).get("team")
    return str(team) if team and team in CHORUS.catalog.teams else None


if HISTORY:
    FILES = LocalFileStore(files_root(CHORUS.settings), ensure_auth_secret(CHORUS.settings.home))
    chainlit_app.router.routes.insert(0, Route(ROUTE + "{key:path}", file_route(FILES)))

    @cl.password_auth_callback
    async def login(username: str, password: str) -> cl.User | None:
        if await authenticate(_store_engine(), username, password):
            return cl.User(identifier=username.strip(), metadata=sessions.login_claims(sessions.PASSWORD))
        return None

    sessions.install(_store_engine)  # Chainlit's token check also refuses ended logins
    sessions.guard_messages(_store_engine)  # and so does the socket, before a message is stored

    @cl.on_logout
    async def logout(request: Request, response: Response) -> dict[str, bool]:
        """Logging out ends this login for good: its token is refused from now on, on every worker."""
        from chorus.webguard import request_token

        try:
            await sessions.revoke(_store_engine(), request_token(request.scope))
        except Exception as exc:
            log.error("could not end a login at logout: %s", exc)
        return {"success": True}

    @cl.data_layer
    def data_layer() -> Any:
        from chorus.store.datalayer import ChorusDataLayer

        memory = CHORUS.memory
        layer = ChorusDataLayer(DATABASE_URL, files=FILES, max_message_chars=CHORUS.settings.max_message_chars,
                                on_deleted=memory.forget_conversation_files if memory is not None else None)
        # A deleted conversation's open pages are told and start afresh; nothing brings it back.
        return chainlit_fixes.forget_deleted_threads(layer, on_detach=_leave_deleted_thread)

    def _leave_deleted_thread(state: dict[str, Any]) -> None:
        """A chat whose conversation was deleted while open: its team stops answering, and its next
        message opens a new session on a new conversation."""
        session = state.pop("chorus", None)
        if isinstance(session, ChatSession):
            session.stop()
        state.pop("profile_saved", None)

    @cl.on_feedback
    async def feedback_to_trace(feedback: Any) -> None:
        """Thumbs up/down on a reply (stored by Chainlit) also becomes MLflow feedback from that
        user on the turn's trace."""
        tracer = CHORUS.tracer
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

    @cl.on_chat_resume
    async def resume(thread: Any) -> None:
        """Reopen a thread from the history: the page shows its messages; the team gets its memory back."""
        reconnect = isinstance(cl.user_session.get("chorus"), ChatSession)  # a socket blip, not a reopen
        await _complete_for_page(thread)
        session = await _open()
        if session is None or reconnect:
            return
        if not await session.resume():
            await cl.Message(
                content="ℹ️ The team has no saved memory of this conversation; it starts afresh from here.",
                author=SYSTEM,
            ).send()

    async def _complete_for_page(thread: Any) -> None:
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
            commands = await step_commands(_store_engine(), str(thread.get("id")))
        except Exception as exc:  # the messages still show, without their command tags
            log.warning("could not read the commands of conversation %s: %s", thread.get("id"), exc)
            return
        for step in thread.get("steps") or []:
            if step.get("id") in commands:
                step["command"] = commands[step["id"]]


EXPORT_COMMAND = "Export"
MEMORIES_COMMAND = "Memories"
MEMORIES_SHOWN = 25


async def _offer_commands() -> None:
    commands: list[Any] = []
    if HISTORY:
        commands.append({
            "id": EXPORT_COMMAND,
            "description": "Download this conversation as Markdown (write 'json' for JSON)",
            "icon": "download",
            "button": True,
            "persistent": False,
            "selected": False,
        })
    if _user_memory() is not None:  # logged-in users only: anonymous visitors have no memory
        commands.append({
            "id": MEMORIES_COMMAND,
            "description": "See what the team remembers about you, and forget any of it",
            "icon": "brain",
            "button": True,
            "persistent": False,
            "selected": False,
        })
    if commands:
        await cl.context.emitter.set_commands(commands)


def _user_memory() -> Any:
    session = cl.user_session.get("chorus")
    context = session.tool_context if isinstance(session, ChatSession) else None
    return context.memory if context is not None else None


async def _show_memories() -> None:
    """The user's memories, each with a button that forgets it (their own only: the memory
    object is bound to the logged-in user by the session)."""
    memory = _user_memory()
    if memory is None:
        reason = CHORUS.memory.problem if CHORUS.memory is not None and CHORUS.memory.problem else (
            "memories are kept only for logged-in users")
        await cl.Message(content=f"ℹ️ Nothing is remembered here: {reason}.", author=SYSTEM).send()
        return
    items = await memory.list()
    if not items:
        await cl.Message(content="The team remembers nothing about you yet. Tell it about your favourite "
                                 "artists or genres and it will keep them for later conversations.",
                         author=SYSTEM).send()
        return
    shown = items[-MEMORIES_SHOWN:]
    lines = "\n".join(f"{n}. {item.text} _(saved {item.created_at[:10]})_" for n, item in enumerate(shown, start=1))
    more = f"\n\n…and {len(items) - len(shown)} older ones." if len(items) > len(shown) else ""
    actions = [cl.Action(name="forget_memory", payload={"id": item.id, "text": item.text[:80]},
                         label=f"Forget {n}", icon="trash-2") for n, item in enumerate(shown, start=1)]
    actions.append(cl.Action(name="forget_all_memories", payload={}, label="Forget everything", icon="trash"))
    await cl.Message(content=f"**What the team remembers about you** ({len(items)}):\n\n{lines}{more}",
                     author=SYSTEM, actions=actions).send()


@cl.action_callback("forget_memory")
async def forget_memory(action: cl.Action) -> None:
    memory = _user_memory()
    if memory is not None and await memory.forget(str(action.payload.get("id", ""))):
        await cl.Message(content=f"Forgotten: “{action.payload.get('text', '')}”.", author=SYSTEM).send()
        await action.remove()
    else:
        await cl.Message(content="That memory was already forgotten.", author=SYSTEM).send()


@cl.action_callback("forget_all_memories")
async def forget_all_memories(action: cl.Action) -> None:
    memory = _user_memory()
    count = await memory.forget_all() if memory is not None else 0
    await cl.Message(content=f"Forgotten: all {count} memories. The team starts afresh with you.",
                     author=SYSTEM).send()


async def _export(message: cl.Message) -> None:
    """The current conversation as a file: the user's own thread only."""
    from chorus.store.export import ThreadNotFound, load_thread, render

    fmt: Literal["md", "json"] = "json" if "json" in (message.content or "").lower() else "md"
    user = cl.user_session.get("user")
    thread_id = cl.context.session.thread_id
    try:
        # The request itself is not part of the conversation it exports (Chainlit may or may not
        # have stored it by now).
        thread = await load_thread(_store_engine(), thread_id, owner=getattr(user, "identifier", None) or "",
                                   leave_out={message.id})
    except ThreadNotFound:
        await cl.ErrorMessage(content="There is nothing to export yet: ask the team something first.",
                              author=SYSTEM).send()
        return
    name = f"chorus-{thread_id[:8]}.{fmt}"
    mime = "text/markdown" if fmt == "md" else "application/json"
    file = cl.File(name=name, content=render(thread, fmt).encode("utf-8"), mime=mime, display="inline")
    await cl.Message(content=f"Here is this conversation as {fmt.upper()}: {name}", author=SYSTEM,
                     elements=[file]).send()


async def _account_ok() -> bool:
    """With logins on, a login that has ended (logged out, password changed, account removed, widget
    token expired) opens nothing, even on a socket connected before it ended."""
    if not HISTORY:
        return True
    try:
        valid = await sessions.still_valid(_store_engine(), getattr(cl.context.session, "token", None))
    except Exception as exc:
        log.error("could not check a login: %s", exc)
        valid = False
    if valid:
        return True
    user = cl.user_session.get("user")
    await cl.ErrorMessage(content=sessions.ended_message(getattr(user, "identifier", None)), author=SYSTEM).send()
    return False


async def _open() -> ChatSession | None:
    """Open (or find) this chat's session for a new or reopened conversation; None after telling why."""
    if not await _account_ok():
        return None
    try:
        session = _session()
    except ChorusError as exc:
        await cl.ErrorMessage(content=str(exc), author=SYSTEM).send()
        return None
    await _offer_commands()
    await _show_notices(session)
    return session


async def _show_notices(session: ChatSession) -> None:
    """What the user should know as the chat opens (a broken plugin, memory unavailable), shown by
    chorus.js and chorus-widget.js in a banner above the composer, never as a chat message: Chainlit
    shows a team's starters only while the chat has no message. Sent every time, so that a chat with
    nothing to say clears the banner of the one before. The offline model has its own banner
    (GET /chorus/status)."""
    notices = [{"text": n.text, "level": n.level} for n in session.notices() if n.code != "offline_model"]
    await cl.context.emitter.send_window_message({"chorus": "notices", "notices": notices})


@cl.on_chat_start
async def start() -> None:
    session = await _open()
    if session is None:
        return
    session.start_preparing()  # while the user types: the first reply starts sooner


@cl.on_message
async def on_message(message: cl.Message | None) -> None:
    if message is None:  # Chainlit passes None when an edited message cannot be found
        return
    if message.command == EXPORT_COMMAND:
        await _export(message)
        return
    try:
        session = _session()
    except ChorusError as exc:
        await cl.ErrorMessage(content=f"{exc} Start a new chat once this is fixed.", author=SYSTEM).send()
        return
    if message.command == MEMORIES_COMMAND:
        await _show_memories()
        return
    line = _line()
    before, mine, stops = line.join()  # the message's place, taken before anything is awaited
    try:
        if HISTORY:
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
        if before is not None and not before.done() and not await _wait_in_line(before, line, stops):
            return
        await _answer(session, message)
    finally:
        line.leave(before, mine)


class _Line:
    """This chat's messages, answered one at a time in the order they arrived.

    A message sent while the team is answering waits for the messages before it, under a note
    that only the page shows (it is not stored). The stop button stops the running turn and
    every message waiting behind it.
    """

    def __init__(self) -> None:
        self.last: asyncio.Future[None] | None = None  # done when the newest message is answered
        self.stops = 0  # how often the stop button was pressed

    def join(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None], int]:
        before, mine = self.last, asyncio.get_running_loop().create_future()
        self.last = mine
        return before, mine, self.stops

    @staticmethod
    def leave(before: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        """Let the next message go, once every message before this one is done too."""
        def done(_: object = None) -> None:
            if not mine.done():
                mine.set_result(None)

        if before is None or before.done():
            done()
        else:  # stopped while waiting: the next one still waits for those before us
            before.add_done_callback(done)


def _line() -> _Line:
    line = cl.user_session.get("line")
    if not isinstance(line, _Line):
        line = _Line()
        cl.user_session.set("line", line)
    return line


async def _wait_in_line(before: asyncio.Future[None], line: _Line, stops: int) -> bool:
    """Wait for the messages before this one; False when the stop button was pressed meanwhile."""
    note = cl.Message(content=QUEUED_NOTE, author=SYSTEM)
    emitter = cl.context.emitter
    await emitter.send_step(note.to_dict())
    try:
        await asyncio.wait([before])  # (not ``await before``: that would cancel it with us)
    except asyncio.CancelledError:  # the stop button cancels the newest message's task
        note.content = STOPPED_NOTE
        await emitter.update_step(note.to_dict())
        raise
    if line.stops != stops:
        note.content = STOPPED_NOTE
        await emitter.update_step(note.to_dict())
        return False
    await emitter.delete_step(note.to_dict())
    await emitter.task_start()  # the previous message's end told the page the team was idle
    return True


async def _answer(session: ChatSession, message: cl.Message) -> None:
    """Run the turn for ``message`` and show it on the page (registered while it runs, for a stop)."""
    task = asyncio.current_task()
    if _draining is not None or task is None:  # the server is stopping: the message is kept, unanswered
        return
    _running[task] = session
    try:
        await _run_and_show(session, message)
    finally:
        _running.pop(task, None)


async def _run_and_show(session: ChatSession, message: cl.Message) -> None:
    try:
        attachments = await read_attachments(message.elements or [], CHORUS.settings)
    except AttachmentError as exc:
        await cl.ErrorMessage(content=f"{exc}. Send the message again without it.", author=SYSTEM).send()
        return
    turn_id = uuid.uuid4().hex
    renderer = _Renderer(persist_every=PARTIAL_REPLY_EVERY_S if HISTORY else None, turn_id=turn_id)
    turn = run_turn(session, message.content or "", message_id=message.id, attachments=attachments,
                    turn_id=turn_id)
    try:
        # aclosing: a stop that lands while the page is drawing must still end the turn (and its lock).
        async with contextlib.aclosing(turn) as events:
            async for event in events:
                await renderer.show(event)
    finally:
        await renderer.close()  # the stop button cancels this task: finish the cut-off bubbles


@cl.on_stop
async def on_stop() -> None:
    _line().stops += 1  # messages waiting behind the running turn are not answered either
    session = cl.user_session.get("chorus")
    if isinstance(session, ChatSession):
        session.stop()


class _Stream:
    """One agent's reply as it streams to the page.

    The first text goes out at once; after that, text is sent at most once per
    ``STREAM_FLUSH_S``, joined, instead of one socket event per model chunk. At a real model's
    pace that is two or three chunks per event, and under load it is what keeps a process
    serving hundreds of chats: each socket event costs far more than the text it carries.
    The page still looks live (a pause of at most ``STREAM_FLUSH_S``), and what it shows in
    the end is exactly the model's text (the finished message replaces it).
    """

    def __init__(self, msg: cl.Message) -> None:
        self.msg = msg
        self.guard = ImageGuard()  # model output never embeds an image (chorus.webguard)
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self._sending = False  # the flusher is past its wait: let it finish rather than cancel it
        self._finished = False

    async def feed(self, text: str) -> None:
        text = self.guard.feed(text)
        if not text:
            return
        if not self.msg.streaming:  # the first text of the reply: no waiting
            await self.msg.stream_token(text)
            return
        self._pending.append(text)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(STREAM_FLUSH_S)
        self._sending = True
        try:
            await self._flush()
        finally:
            self._sending = False
            self._flusher = None
            if self._pending and not self._finished:  # text came while this batch was being sent
                self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            await self.msg.stream_token(text)

    async def finish(self) -> cl.Message:
        """Send what is still pending (in order, before the caller sends the finished message)."""
        self._finished = True
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            if self._sending:
                await flusher
            else:
                flusher.cancel()
        await self._flush()
        return self.msg


class _Renderer:
    """Turns one turn's events into Chainlit messages (one per agent reply) and tool steps.

    A message is sent (and so stored) once, when it is finished: sending it early and
    updating it later races two writes to the database, and the empty one could win.
    """

    def __init__(self, persist_every: float | None = None, turn_id: str = "") -> None:
        self.turn_id = turn_id  # on every reply's metadata: feedback finds the turn's trace by it
        self.streams: dict[str, _Stream] = {}  # the open reply of each agent speaking now
        self.steps: dict[str, cl.Step] = {}
        self.persist_every = persist_every
        self.persisted_at: dict[str, float] = {}

    async def _persist_partial(self, msg: cl.Message) -> None:
        """Store the reply so far, marked interrupted: what a crash leaves is what was said."""
        now = time.monotonic()
        if self.persist_every is None or now - self.persisted_at.setdefault(msg.id, now) < self.persist_every:
            return
        self.persisted_at[msg.id] = now
        partial = msg.to_dict()
        partial["output"] = (msg.content or "") + INTERRUPTED_MARK
        partial["streaming"] = False
        try:
            await get_data_layer().create_step(partial)
        except Exception as exc:  # never let a storage hiccup break the live stream
            log.error("could not checkpoint a streaming reply (step %s): %s", msg.id, exc)

    def _stream(self, agent: str) -> _Stream:
        stream = self.streams.get(agent)
        if stream is None:
            msg = cl.Message(content="", author=agent, metadata={"turn_id": self.turn_id})
            msg.created_at = chainlit_fixes.utc_now()  # a partial checkpoint must sort where the reply began
            stream = self.streams[agent] = _Stream(msg)
        return stream

    async def show(self, event: TurnEvent) -> None:
        if isinstance(event, TokenEvent):
            stream = self._stream(event.agent)
            await stream.feed(event.text)
            await self._persist_partial(stream.msg)
        elif isinstance(event, MessageEvent):
            streamed = self.streams.get(event.agent)
            content = neutralise_images(event.content)
            if streamed is None:
                await cl.Message(content=content, author=event.agent, metadata={"turn_id": self.turn_id}).send()
            else:
                msg = await streamed.finish()
                msg.content = content  # the finished text is the truth, whatever streamed
                await msg.send()
                # Only now: a stop that lands while it is sent still finds it, and close() ends it.
                self.streams.pop(event.agent, None)
        elif isinstance(event, ToolCallEvent):
            step = cl.Step(name=event.name, type="tool", show_input="json")
            step.input = event.parsed_arguments()
            self.steps[event.call_id] = step
            await step.send()
        elif isinstance(event, ToolResultEvent):
            step = self.steps.pop(event.call_id) if event.call_id in self.steps else cl.Step(event.name, type="tool")
            step.output = neutralise_images(event.result)
            step.is_error = event.is_error
            await step.update()
        elif isinstance(event, RetrievalEvent):
            step = cl.Step(name=event.kind, type="retrieval")  # the page shows "Used memory"
            step.output = neutralise_images("\n".join(f"- {item}" for item in event.items) or "(nothing)")
            await step.send()
        elif isinstance(event, ErrorEvent):  # may quote a provider's or a tool's text: no images from it
            await cl.ErrorMessage(content=neutralise_images(event.message), author=SYSTEM).send()
        elif isinstance(event, NoticeEvent):
            prefix = "⚠️ " if event.level == "warning" else "ℹ️ "
            await cl.Message(content=prefix + neutralise_images(event.text), author=SYSTEM).send()
        elif isinstance(event, DoneEvent):
            await self.close()
            if event.prompt_tokens or event.completion_tokens:
                await _usage_step(event, traced=CHORUS.tracer is not None)

    async def close(self) -> None:
        """Finish every message still streaming (a stop cut it short): keep what was said."""
        open_streams, self.streams = list(self.streams.values()), {}
        for stream in open_streams:
            msg = await stream.finish()
            if _draining is not None:  # the server, not the user, cut it short: the history says so
                msg.content = (msg.content or "") + INTERRUPTED_MARK
            await msg.send()


async def _usage_step(done: DoneEvent, traced: bool) -> None:
    """The turn's tokens and cost, folded under its answer, with the link to its trace."""
    cost = "price unknown" if done.cost is None else f"${done.cost:,.4f}"
    step = cl.Step(name="tokens and cost", type="undefined")
    step.output = (f"{done.prompt_tokens + done.completion_tokens:,} tokens ({done.prompt_tokens:,} in, "
                   f"{done.completion_tokens:,} out) · {cost} · {done.duration_ms / 1000:.1f} s")
    if traced and done.turn_id:
        step.output += f" · [trace in MLflow](/chorus/trace/{done.turn_id})"
    await step.send()


# The code and data loaded so far live as long as the process: move them out of the garbage
# collector's view, so that collections under load (hundreds of chats) scan only what turns
# allocate. Done last, once every module above has been imported.
gc.collect()
gc.freeze()
# A turn allocates many short-lived objects (AutoGen messages, events, pydantic models): with
# CPython's default of a young-generation collection every 700 allocations, collecting took a
# quarter of a loaded process's time. Collect less often; the young generation stays small.
gc.set_threshold(50_000, 20, 10)
