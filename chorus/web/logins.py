"""Login sessions that end when they should.

Chainlit's login is a signed token (a JWT in the ``access_token`` cookie) that it accepts until
it expires, whatever happened since. Chorus also refuses, on every authenticated HTTP request
and socket connection, and again before answering each message:

- a token its user logged out of (its hash is kept in ``chorus_revoked_logins`` until the
  token would have expired anyway);
- a password account's token made before the account's ``sessions_after``: set when the
  account is made (a new account of an old name inherits no login) and when its password
  changes (``chorus users passwd``), so every login made with the old password ends;
- a password account's token once the account is removed;
- a widget visitor's session past its end: ``CHORUS_WIDGET_SESSION_MINUTES`` after sign-in, or the
  host site's token's expiry if later, and never more than a day (Chainlit's would be 15 days).

Everything is read from the database, so it holds across several workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.auth import SECRET_ENV
from chorus.store.schema import accounts, revoked_logins

log = logging.getLogger(__name__)

PASSWORD = "password"
WIDGET = "widget"
WIDGET_SESSION_MAX_S = 24 * 3600 + 60  # the longest a widget token may live, and a little leeway
ENDED = "This login has ended (logged out, password changed, account removed or expired): log in again."
WIDGET_ENDED = "This chat session has expired: reload the page to start a new one."


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def claims_of(token: str | None) -> dict[str, Any] | None:
    """The claims of a login token signed with this server's secret; None if forged or expired."""
    secret = os.environ.get(SECRET_ENV)
    if not token or not secret:
        return None
    try:
        return dict(jwt.decode(token, secret, algorithms=["HS256"]))
    except jwt.PyJWTError:
        return None


def login_claims(provider: str, **extra: Any) -> dict[str, Any]:
    """The metadata a login puts in its token: how it was made, and when (to the microsecond,
    so a password changed a moment later still ends it)."""
    return {"provider": provider, "login_at": time.time(), **extra}


async def still_valid(engine: AsyncEngine, token: str | None) -> bool:
    """Whether ``token`` still opens its user's session (see the module's docstring)."""
    claims = claims_of(token)
    if claims is None:
        return False
    assert token is not None
    found = claims.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    async with engine.connect() as conn:
        if await conn.scalar(sa.select(revoked_logins.c.token_hash).where(
                revoked_logins.c.token_hash == token_hash(token))) is not None:
            return False
        if metadata.get("provider") == WIDGET:
            # A widget session ends when its own cookie says (widget_session_expiry); one from
            # before that rule, with Chainlit's 15-day lifetime, counts no longer than the most.
            return int(claims.get("exp", 0)) - int(claims.get("iat", 0)) <= WIDGET_SESSION_MAX_S
        if metadata.get("provider") != PASSWORD:
            return True
        row = (await conn.execute(sa.select(accounts.c.sessions_after).where(
            accounts.c.identifier == str(claims.get("identifier", ""))))).first()
    if row is None:
        return False  # the account was removed
    login_at = float(metadata.get("login_at") or claims.get("iat") or 0)
    return row.sessions_after is None or login_at >= float(row.sessions_after)


async def revoke(engine: AsyncEngine, token: str | None) -> bool:
    """End the login ``token`` (logout); False when it was not a valid token of this server."""
    claims = claims_of(token)
    if claims is None:
        return False
    assert token is not None
    now = time.time()
    async with engine.begin() as conn:
        await conn.execute(sa.delete(revoked_logins).where(revoked_logins.c.expires_at < now))  # no longer needed
        known = await conn.scalar(sa.select(revoked_logins.c.token_hash).where(
            revoked_logins.c.token_hash == token_hash(token)))
        if known is None:
            await conn.execute(sa.insert(revoked_logins).values(
                token_hash=token_hash(token), user_identifier=str(claims.get("identifier", "")),
                expires_at=float(claims.get("exp") or now + 86_400 * 30)))
    return True


def install(engine: Callable[[], AsyncEngine]) -> None:
    """Make Chainlit's token check (every HTTP route's login and every socket connection's) also
    refuse ended logins. Idempotent."""
    import chainlit.auth as chainlit_auth
    from fastapi import Depends, HTTPException

    original: Callable[[str], Awaitable[Any]] = getattr(
        chainlit_auth.authenticate_user, "__chorus_original__", chainlit_auth.authenticate_user)

    async def authenticate_user(token: str = Depends(chainlit_auth.reuseable_oauth)) -> Any:
        # Checked first: Chainlit's own check re-creates the user's row for any valid token, which
        # would bring a removed account back.
        if not await still_valid(engine(), token):
            raise HTTPException(status_code=401, detail=ENDED)
        return await original(token)

    authenticate_user.__chorus_original__ = original  # type: ignore[attr-defined]
    chainlit_auth.authenticate_user = authenticate_user


def ended_message(identifier: str | None) -> str:
    """What a user whose login has ended is told."""
    return WIDGET_ENDED if str(identifier or "").startswith("widget:") else ENDED


def guard_messages(engine: Callable[[], AsyncEngine]) -> None:
    """Check the login before Chainlit takes a message from the socket (and stores it): a page left
    open after its login ended is told so, and what it sends is neither stored nor answered.
    Idempotent."""
    from chainlit.server import sio

    handlers = sio.handlers.setdefault("/", {})
    for event in ("client_message", "edit_message"):
        original = handlers.get(event)
        if original is not None and not getattr(original, "__chorus_login_guard__", False):
            handlers[event] = _guarded(original, engine)


def _guarded(original: Callable[..., Awaitable[Any]], engine: Callable[[], AsyncEngine]) -> Callable[..., Any]:
    from chainlit.context import init_ws_context
    from chainlit.message import ErrorMessage
    from chainlit.session import WebsocketSession

    async def handler(sid: str, payload: Any) -> Any:
        session = WebsocketSession.get(sid)
        if session is not None and session.user is not None:
            try:
                valid = await still_valid(engine(), session.token)
            except Exception as exc:  # the database is down: say so rather than drop the message silently
                log.error("could not check the login of %s: %s", session.user.identifier, exc)
                valid = False
            if not valid:
                context = init_ws_context(session)
                notice = ErrorMessage(content=ended_message(session.user.identifier), author="Chorus")
                await context.emitter.send_step(notice.to_dict())  # shown, not stored
                return None
        return await original(sid, payload)

    handler.__chorus_login_guard__ = True  # type: ignore[attr-defined]
    return handler


def widget_session_expiry(token_expires_at: int | None, session_minutes: float, now: float | None = None) -> int:
    """When a widget visitor's session ends: ``session_minutes`` after sign-in, or when the host
    site's token expires if that is later, and never more than a day after sign-in (Chainlit's
    own cookie would live 15 days)."""
    now = time.time() if now is None else now
    ends = max(now + session_minutes * 60, float(token_expires_at or 0))
    return int(min(ends, now + WIDGET_SESSION_MAX_S - 60))


def widget_session_token(user_dict: dict[str, Any], expires_at: int) -> str:
    """Chainlit's login token for a widget visitor, expiring at ``expires_at`` (epoch seconds)."""
    now = int(time.time())
    claims = {**user_dict, "iat": now, "exp": max(now + 1, int(expires_at))}
    return jwt.encode(claims, os.environ[SECRET_ENV], algorithm="HS256")


__all__ = [
    "ENDED", "WIDGET_ENDED", "claims_of", "ended_message", "guard_messages", "install", "login_claims", "revoke",
    "still_valid", "token_hash", "widget_session_expiry", "widget_session_token",
]
