"""The chat widget on other websites: sign-in tokens for a host site's users, and the snippet.

A site that embeds Chorus (Chainlit's Copilot widget) signs its visitors in with a short-lived
token its own backend issues: an HS256 JWT signed with the *widget secret* (never the secret of
Chorus's own login sessions), with the claims

- ``iss``: ``"chorus-widget"``;
- ``sub``: the host site's id for its user (1-128 printable characters);
- ``exp``: when the token stops working (Chorus accepts at most :data:`MAX_TTL_S` from ``iat``);
- ``iat``: when it was issued;
- ``team`` (optional): the team that answers in this embed;
- ``name`` (optional): the name shown for the user.

Any JWT library can make one; :func:`make_token` and ``chorus widget token`` do it here. The
widget exchanges it once (``POST /auth/jwt``) for Chorus's own session cookie. Its user is the
identity ``widget:<sub>``: a name no password account can have, so widget users and password
users never share threads, memory or budgets.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

ISSUER = "chorus-widget"
IDENTITY_PREFIX = "widget:"
SECRET_ENV = "CHORUS_WIDGET_SECRET"
SECRET_FILE = "widget_secret"
DEFAULT_TTL_S = 300
MAX_TTL_S = 24 * 3600
LEEWAY_S = 10
MIN_SECRET_CHARS = 32


class WidgetTokenError(ValueError):
    """A widget token that is not accepted; the message says why (safe to show the host site)."""


@dataclass(frozen=True)
class WidgetUser:
    """Who a valid widget token signs in."""

    user_id: str
    team: str | None = None
    name: str | None = None
    expires_at: int | None = None
    """When the token stops working (epoch seconds): the visitor's session ends then too."""

    @property
    def identifier(self) -> str:
        return IDENTITY_PREFIX + self.user_id


def is_widget_identity(identifier: str) -> bool:
    return identifier.startswith(IDENTITY_PREFIX)


def ensure_widget_secret(home: Path) -> str:
    """``CHORUS_WIDGET_SECRET`` from the environment, else from (or new in) ``home/widget_secret``.

    Give this secret to the host site's backend, and only to it: whoever holds it can sign in
    as any widget user (but never as a password user). Changing it invalidates unused tokens.
    """
    if os.environ.get(SECRET_ENV):
        secret = os.environ[SECRET_ENV].strip()
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"{SECRET_ENV} must be at least {MIN_SECRET_CHARS} characters "
                             "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')")
        return secret
    home = home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    path = home / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret


def _check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= 128 or not user_id.isprintable():
        raise WidgetTokenError("the token's user id ('sub') must be 1-128 printable characters")
    return user_id


def make_token(user_id: str, *, secret: str, ttl_s: int = DEFAULT_TTL_S, team: str | None = None,
               name: str | None = None, now: float | None = None) -> str:
    """A widget sign-in token for the host site's user ``user_id``, valid for ``ttl_s`` seconds.

    Call it in the host site's backend when it renders the page with the widget.
    """
    _check_user_id(user_id)
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise WidgetTokenError(f"a widget token lives 1 to {MAX_TTL_S} seconds, not {ttl_s}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"iss": ISSUER, "sub": user_id, "iat": issued, "exp": issued + ttl_s}
    if team:
        claims["team"] = team
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")


def read_token(token: str, *, secret: str) -> WidgetUser:
    """The user a widget token signs in; :class:`WidgetTokenError` when it is expired, tampered
    with, signed with another secret, lives too long, or lacks a claim."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], issuer=ISSUER, leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise WidgetTokenError("the widget token has expired: the host site must issue a new one") from None
    except jwt.InvalidSignatureError:
        raise WidgetTokenError("the widget token's signature is not valid") from None
    except jwt.PyJWTError as exc:
        raise WidgetTokenError(f"the widget token is not valid: {exc}") from None
    if int(claims["exp"]) - int(claims["iat"]) > MAX_TTL_S:
        raise WidgetTokenError(f"the widget token lives longer than {MAX_TTL_S} seconds")
    team = claims.get("team")
    name = claims.get("name")
    return WidgetUser(
        user_id=_check_user_id(claims["sub"]),
        team=str(team) if team else None,
        name=str(name)[:128] if name else None,
        expires_at=int(claims["exp"]),
    )


def snippet(server_url: str, *, team: str | None = None) -> str:
    """The HTML a site owner pastes into their page (see docs/widget.md)."""
    server = server_url.rstrip("/")
    team_flag = f" --team {team}" if team else ""
    return f"""<!-- Chorus chat widget. The page must be UTF-8: -->
<meta charset="utf-8">
<script src="{server}/copilot/index.js"></script>
<script src="{server}/chorus/static/chorus-widget.js"></script>
<script>
  window.mountChainlitWidget({{
    chainlitServer: "{server}",
    // A short-lived token your backend issues for the signed-in visitor, for example with
    //   chorus widget token --user <their id>{team_flag}
    // or chorus.widget.make_token(...) / any JWT library (see docs/widget.md).
    accessToken: "REPLACE_WITH_TOKEN_FROM_YOUR_BACKEND",
  }});
</script>
"""
