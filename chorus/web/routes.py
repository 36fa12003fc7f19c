"""Chorus's own HTTP routes next to Chainlit's: static files, the offline banner's status, the logo,
each agent's avatar, trace links, the page's texts, the widget's sign-in, and kept files.

Chainlit's catch-all route would answer first: :func:`install` puts these ahead of it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import chainlit as cl
from chainlit.auth import set_auth_cookie
from chainlit.config import APP_ROOT, config
from chainlit.data import get_data_layer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chorus.avatars import Avatars
from chorus.store.files import ROUTE
from chorus.web import admin, logins
from chorus.web.audit import note
from chorus.web.context import SYSTEM, WebApp, current
from chorus.web.uploads import file_route
from chorus.widget import WidgetTokenError, read_token

log = logging.getLogger("chorus.app")

STATIC = Path(__file__).resolve().parents[1] / "static"
OFFLINE_BANNER = (
    "Offline model in use: answers come from Chorus's deterministic local model, which routes "
    "questions and calls tools but does not understand free-form requests. Set CHORUS_MODEL to a "
    "litellm model string and restart for a real model."
)
NEW_CHAT_KEPT = ("Your current conversation is kept: reopen it from the history in the sidebar at any time. "
                 "Start a new chat?")
_LANGUAGE = re.compile(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,4})?(-[a-zA-Z0-9]{2,8})?(-x-[a-zA-Z0-9]{1,8})?")  # Chainlit's


def install(app: Starlette, web: WebApp) -> None:
    """Put Chorus's routes ahead of Chainlit's catch-all (``web``'s choices decide which)."""
    routes = [
        Route("/chorus/static/{name}", static),
        Route("/chorus/status", status),
        Route("/logo", logo),
        # Each agent's own avatar where the page and the widget ask for it (Chainlit's route, same
        # path, would answer every author with one picture); Chorus's own messages keep the Chorus mark.
        Route("/avatars/{avatar_id:str}", Avatars(lambda: current().chorus.registry.agents, system=SYSTEM,
                                                   public=Path(APP_ROOT) / "public" / "avatars").endpoint),
        Route("/chorus/trace/{turn_id}", trace),
        Route("/project/translations", translations),
        Route("/auth/jwt", widget_login, methods=["POST"]),
        *admin.routes(),
    ]
    if web.files is not None:
        routes.append(Route(ROUTE + "{key:path}", file_route(web.files)))
    for route in routes:
        app.router.routes.insert(0, route)


async def static(request: Request) -> Response:
    path = (STATIC / request.path_params["name"]).resolve()
    if path.parent != STATIC or not path.is_file():
        return Response(status_code=404)
    return FileResponse(path)


async def status(request: Request) -> Response:
    """What the page's banner shows: which teams (by chat profile name) use the offline model."""
    chorus = current().chorus
    teams = {spec.title: chorus.uses_offline_model(spec.name) for spec in chorus.catalog.teams.values()}
    return JSONResponse({"default": chorus.catalog.default.title, "offline": teams, "notice": OFFLINE_BANNER})


async def logo(request: Request) -> Response:
    theme = "light" if request.query_params.get("theme") == "light" else "dark"
    return FileResponse(STATIC / f"logo_{theme}.svg", media_type="image/svg+xml")


async def trace(request: Request) -> Response:
    """A reply's link to its trace: finds the turn's MLflow trace and sends the browser to the UI."""
    turn_id = request.path_params["turn_id"]
    tracer = current().chorus.tracer
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


async def translations(request: Request) -> Response:
    """Chainlit's texts for the page (its own route's answer), except that with history on the
    new-chat dialog says the truth: the current conversation is kept, where Chainlit's text says
    it is cleared. In English whatever the language, as are Chorus's other texts on the page."""
    language = request.query_params.get("language", "en-US")
    if not _LANGUAGE.fullmatch(language):
        return JSONResponse({"detail": "Invalid language code."}, status_code=422)
    translation = await asyncio.to_thread(config.load_translation, config.ui.language or language)
    dialog = translation.get("navigation", {}).get("newChat", {}).get("dialog")
    if current().history and isinstance(dialog, dict):
        dialog["description"] = NEW_CHAT_KEPT
    return JSONResponse({"translation": translation})


async def widget_login(request: Request) -> Response:
    """The widget's sign-in (Chainlit's copilot posts its ``accessToken`` here): a host site's
    widget token becomes a Chorus session cookie for ``widget:<user>``; anything else is refused."""
    web = current()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if web.widget_secret is None:
        return JSONResponse({"detail": "The widget is off (set CHORUS_ALLOWED_ORIGINS)."}, status_code=401)
    if scheme.lower() != "bearer" or not token.strip():
        return JSONResponse({"detail": "Send the widget token as 'Authorization: Bearer <token>'."},
                            status_code=401)
    try:
        visitor = read_token(token.strip(), secret=web.widget_secret)
    except WidgetTokenError as exc:
        log.warning("widget sign-in refused from %s: %s", request.headers.get("origin", "?"), exc)
        await note("login_failed", "widget", {"method": "widget", "reason": str(exc)[:200]})
        return JSONResponse({"detail": str(exc)}, status_code=401)
    if visitor.team and visitor.team not in web.chorus.catalog.teams:
        return JSONResponse({"detail": f"The token names an unknown team {visitor.team!r}."}, status_code=401)
    user = cl.User(identifier=visitor.identifier, display_name=visitor.name,
                   metadata=logins.login_claims(logins.WIDGET, team=visitor.team))
    layer = get_data_layer()
    if layer is not None:
        await layer.create_user(user)
    await note("login", visitor.identifier, {"method": "widget", "origin": request.headers.get("origin")},
               who=visitor.identifier)
    response = JSONResponse({"success": True})
    # The session lasts CHORUS_WIDGET_SESSION_MINUTES (or the token's life), not Chainlit's 15 days.
    expires_at = logins.widget_session_expiry(visitor.expires_at, web.chorus.settings.widget_session_minutes)
    set_auth_cookie(request, response, logins.widget_session_token(user.to_dict(), expires_at))
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
