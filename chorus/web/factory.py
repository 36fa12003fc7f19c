"""``create_app``: the chat page, its routes and guards, on Chainlit's server.

``chorus run`` (chorus/app.py, inside the package so a wheel serves it) and ``chainlit run app.py``
(the repository's app.py) both call it; so can a test, with a :class:`~chorus.turn.Chorus` of its own.
"""

from __future__ import annotations

import gc
import logging
import os

from chainlit.config import config
from chainlit.server import app as chainlit_app
from chainlit.server import sio
from starlette.applications import Starlette
from starlette.middleware import Middleware

from chorus.auth import ensure_auth_secret
from chorus.logs import quiet_autogen
from chorus.store import database_url, upgrade
from chorus.store.accounts import accounts_exist
from chorus.store.files import LocalFileStore, files_root
from chorus.turn import Chorus
from chorus.web import chainlit_fixes, commands, handlers, history, lifecycle, ops, routes
from chorus.web.api import routes as api_routes
from chorus.web.audit import AuditContext
from chorus.web.context import WebApp, set_current
from chorus.web.guard import CallerGuard, OriginGuard, PageHardening, SecureCookies, TrustedProxies
from chorus.web.uploads import UploadLimit, configure_uploads
from chorus.widget import ensure_widget_secret

log = logging.getLogger("chorus.app")


def create_app(chorus: Chorus | None = None) -> Starlette:
    """Load Chorus (unless given), migrate its database, and serve it on Chainlit's app; returns
    that app (an ASGI app). Logins and history switch on once an account exists (``chorus users
    add NAME``) or the widget is on, so a first start needs no set-up at all."""
    quiet_autogen()
    chainlit_fixes.apply()  # no blocking sleep each time a message or step is made
    lifecycle.bound_connection_wait()  # a stop waits at most 2 s for open requests (before uvicorn starts)
    web = _load(chorus or Chorus.load())
    set_current(web)
    _configure_chainlit(web)
    _install_guards(chainlit_app, web)
    routes.install(chainlit_app, web)
    api_routes.install(chainlit_app)  # the OpenAI-compatible API (chorus.web.api)
    ops.install(chainlit_app)  # /metrics, /healthz, /readyz
    lifecycle.register()
    handlers.register()
    commands.register()
    if web.history:
        history.register()
    _settle_memory()
    return chainlit_app


def _load(chorus: Chorus) -> WebApp:
    for problem in chorus.problems():
        log.error("%s", problem)
    if chorus.tracer is not None:
        chorus.tracer.prepare()  # MLflow's import and store set-up happen off the start-up path
    if chorus.memory is not None:
        # Opens Chroma, ingests knowledge/ on first start and loads the embedding model, without
        # delaying the page: a turn that comes first simply waits for what it needs.
        chorus.memory.start_preparing()
    settings = chorus.settings
    url = database_url(settings)
    upgrade(url)  # done once per process: `chorus run` has usually migrated already
    # The widget (chorus.widget): on when CHORUS_ALLOWED_ORIGINS names the sites that embed it.
    # Its users sign in with tokens, so logins (and with them history) are on too.
    origins = settings.allowed_origin_list()
    proxies = settings.trusted_proxy_networks()  # whose X-Forwarded-* headers are believed
    if proxies:
        os.environ["FORWARDED_ALLOW_IPS"] = ""  # uvicorn (started after this) leaves them to TrustedProxies
    history_on = accounts_exist(url) or bool(origins)
    files = LocalFileStore(files_root(settings), ensure_auth_secret(settings.home)) if history_on else None
    return WebApp(chorus=chorus, database_url=url, history=history_on, widget_origins=origins,
                  widget_secret=ensure_widget_secret(settings.home) if origins else None, proxies=proxies,
                  files=files)


def _configure_chainlit(web: WebApp) -> None:
    config.ui.name = "Chorus"
    config.ui.custom_js = "/chorus/static/chorus.js"
    config.ui.cot = "full"
    config.features.edit_message = True  # run_turn rewinds the team to before the edited message
    configure_uploads(web.chorus.settings)
    # Over-long messages must reach run_turn to be refused with a clear message; python-socketio's
    # default 1 MB frame limit would drop the connection instead.
    sio.eio.max_http_buffer_size = max(8 * 1024 * 1024, 4 * web.chorus.settings.max_message_chars + 65_536)


def _install_guards(app: Starlette, web: WebApp) -> None:
    """The ASGI guards around Chainlit (chorus.web.guard, chorus.web.uploads), once per process:
    `chorus run --watch` runs the factory again in a server that has started."""
    if any(getattr(m.cls, "__name__", "") == UploadLimit.__name__ for m in app.user_middleware):
        return
    # Innermost (inside Chainlit's CORS, so a refusal still carries its headers): names the caller
    # of each request for the data layer's ownership checks.
    app.user_middleware.append(Middleware(CallerGuard))
    app.user_middleware.append(Middleware(AuditContext))  # who and from where, for the audit log
    app.add_middleware(UploadLimit, max_mb=web.chorus.settings.upload_max_mb, settings=web.chorus.settings)
    app.add_middleware(PageHardening, frame_ancestors=web.widget_origins)
    app.add_middleware(SecureCookies)
    app.add_middleware(OriginGuard, allowed=web.widget_origins)  # before anything answers
    if web.proxies:  # outermost: forwarded headers are believed from these proxies only
        app.add_middleware(TrustedProxies, proxies=web.proxies)
    for middleware in app.user_middleware:
        if getattr(middleware.cls, "__name__", "") == "CORSMiddleware":
            # Chainlit allows every origin, with credentials; only the widget's sites may.
            middleware.kwargs["allow_origins"] = list(web.widget_origins)


def _settle_memory() -> None:
    """The code and data loaded so far live as long as the process: move them out of the garbage
    collector's view, so that collections under load (hundreds of chats) scan only what turns
    allocate. A turn allocates many short-lived objects (AutoGen messages, events, pydantic
    models): with CPython's default of a young-generation collection every 700 allocations,
    collecting took a quarter of a loaded process's time. Collect less often; the young
    generation stays small."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
