"""Audit-log entries for what users do on the page and through HTTP (chorus.store.audit).

HTTP requests get their actor (the logged-in user, else ``anonymous``) and address from
:class:`AuditContext`; socket events (the page's commands and actions) from the chat's session.
Writing an entry never fails what the user asked for: a failure is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from chorus.store import audit
from chorus.web.context import current

log = logging.getLogger("chorus.audit")


class AuditContext:
    """Each HTTP request's actor and client address, for the entries written while it is served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from chorus.web.guard import request_token, token_identifier

        client = scope.get("client")
        who = token_identifier(request_token(scope)) or "anonymous"
        with audit.acting(who, client[0] if client else None):
            await self.app(scope, receive, send)


async def note(action: str, target: str = "", detail: dict[str, Any] | None = None, *, who: str | None = None) -> None:
    """Record ``action`` (by the chat's user, when it comes from the page's socket)."""
    where = None
    if who is None:
        try:
            import chainlit as cl

            user = cl.user_session.get("user")
            who = getattr(user, "identifier", None) or None
            environ = getattr(cl.context.session, "environ", None) or {}
            scope = environ.get("asgi.scope") or {}
            client = scope.get("client") if isinstance(scope, dict) else None
            where = str(client[0]) if client else None
        except Exception:
            who = None
    try:
        with audit.acting(who or audit.actor.get(), where or audit.address.get()):
            await audit.record(current().engine(), action, target, detail)
    except Exception as exc:
        log.error("could not write the audit log (%s %s): %s", action, target, exc)
