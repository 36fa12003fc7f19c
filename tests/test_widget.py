"""The widget's safety on a real server: origins (HTTP and socket), sign-in tokens, identities,
and the page's Content-Security-Policy. The browser side is tests/e2e/test_browser_widget.py."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
import socketio
from chat_client import ChatClient, login_cookie
from conftest import ChorusServer

from chorus.widget import MAX_TTL_S, WidgetTokenError, make_token, read_token

SITE = "https://shop.example.com"
EVIL = "https://evil.example.net"
SECRET = "test-widget-secret-0123456789-0123456789-0123456789-012345"


# -- tokens --------------------------------------------------------------------------------------


def test_a_token_round_trips_and_names_a_widget_identity() -> None:
    token = make_token("cust-42", secret=SECRET, ttl_s=120, team="music-store", name="Ana")
    visitor = read_token(token, secret=SECRET)
    assert (visitor.user_id, visitor.team, visitor.name) == ("cust-42", "music-store", "Ana")
    assert visitor.identifier == "widget:cust-42"


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: make_token("a", secret=SECRET, ttl_s=60, now=time.time() - 3600), "expired"),
    (lambda: make_token("a", secret="another-secret-entirely-0123456789-0123456789-0123456789", ttl_s=60), "signature"),
    (lambda: make_token("a", secret=SECRET)[:-3] + "abc", "signature"),
    (lambda: _tamper(make_token("a", secret=SECRET)), "signature"),
    (lambda: jwt.encode({"iss": "chorus-widget", "sub": "a", "iat": int(time.time()),
                         "exp": int(time.time()) + MAX_TTL_S + 100}, SECRET, algorithm="HS256"), "longer"),
    (lambda: jwt.encode({"sub": "a", "iat": int(time.time()), "exp": int(time.time()) + 60}, SECRET,
                        algorithm="HS256"), "iss"),
    (lambda: jwt.encode({"iss": "chorus-widget", "sub": "a", "iat": int(time.time()), "exp": int(time.time()) + 60},
                        SECRET, algorithm="HS512"), "not valid"),
    (lambda: "not-a-token", "not valid"),
])
def test_bad_tokens_are_refused_with_the_reason(make: object, reason: str) -> None:
    with pytest.raises(WidgetTokenError, match=reason):
        read_token(make(), secret=SECRET)  # type: ignore[operator]


def _tamper(token: str) -> str:
    """The same token with its payload changed to another user (signature kept)."""
    import base64
    import json

    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


# -- a real server with the widget on ------------------------------------------------------------


@pytest.fixture(scope="module")
def widget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusServer]:
    srv = ChorusServer(tmp_path_factory.mktemp("widget"), env={
        "CHORUS_ALLOWED_ORIGINS": f"{SITE}, http://127.0.0.1:9/",
        "CHORUS_WIDGET_SECRET": SECRET,
        "CHORUS_OFFLINE_TOKEN_DELAY": "0",
    })
    srv.workdir.mkdir(parents=True, exist_ok=True)
    added = subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", "alice", "--password-stdin"],
                           input="alice-password\n", capture_output=True, text=True, env=srv.env,
                           cwd=srv.workdir, timeout=120)
    assert added.returncode == 0, added.stderr
    srv.start()
    yield srv
    srv.stop()


def _widget_cookie(server: ChorusServer, token: str, origin: str = SITE) -> httpx.Response:
    return httpx.post(f"{server.url}/auth/jwt", headers={"Authorization": f"Bearer {token}", "Origin": origin},
                      timeout=30)


def test_only_listed_origins_get_an_answer_with_credentials(widget_server: ChorusServer) -> None:
    url = f"{widget_server.url}/chorus/status"
    listed = httpx.get(url, headers={"Origin": SITE})
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == SITE
    assert listed.headers["access-control-allow-credentials"] == "true"
    # The page's own origin, and requests without an Origin (a navigation, curl), are served.
    assert httpx.get(url, headers={"Origin": widget_server.url}).status_code == 200
    assert httpx.get(url).status_code == 200
    for origin in (EVIL, "null", "https://shop.example.com.evil.example.net", "http://shop.example.com"):
        refused = httpx.get(url, headers={"Origin": origin})
        assert refused.status_code == 403, origin
        assert "access-control-allow-origin" not in refused.headers
        assert "offline" not in refused.text  # no data
    preflight = httpx.options(f"{widget_server.url}/auth/jwt", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    token = make_token("mallory", secret=SECRET)
    stolen = _widget_cookie(widget_server, token, origin=EVIL)
    assert stolen.status_code == 403 and "set-cookie" not in stolen.headers
    # The socket's handshake checks the origin too: no session from another site.
    polling = httpx.get(f"{widget_server.url}/ws/socket.io/", params={"EIO": "4", "transport": "polling"},
                        headers={"Origin": EVIL})
    assert polling.status_code == 403


async def test_the_socket_refuses_other_origins_and_serves_the_widget_s_site(widget_server: ChorusServer) -> None:
    cookie_response = _widget_cookie(widget_server, make_token("ana", secret=SECRET, team="music-store"))
    assert cookie_response.status_code == 200, cookie_response.text
    cookie = "; ".join(f"{k}={v}" for k, v in cookie_response.cookies.items())
    with pytest.raises(socketio.exceptions.ConnectionError):
        await ChatClient(widget_server, cookie=cookie, origin=EVIL).connect()
    client = await ChatClient(widget_server, cookie=cookie, origin=SITE).connect()
    try:
        reply = await client.answer_to("What albums does AC/DC have?", "Let There Be Rock")
        assert reply["name"] == "catalog"  # the token's team answers, not the default one
    finally:
        await client.sio.disconnect()


def test_a_widget_token_signs_in_a_distinct_identity(widget_server: ChorusServer) -> None:
    ok = _widget_cookie(widget_server, make_token("alice", secret=SECRET, name="Alice from the shop"))
    assert ok.status_code == 200 and "access_token" in ok.cookies
    me = httpx.get(f"{widget_server.url}/user", cookies=ok.cookies, headers={"Origin": SITE}).json()
    assert me["identifier"] == "widget:alice"  # never the password user "alice"
    password_alice = httpx.get(f"{widget_server.url}/user", headers={
        "Cookie": login_cookie(widget_server.url, "alice", "alice-password")}).json()
    assert password_alice["identifier"] == "alice"

    expired = _widget_cookie(widget_server, make_token("alice", secret=SECRET, ttl_s=60, now=time.time() - 600))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert "set-cookie" not in expired.headers
    tampered = _widget_cookie(widget_server, _tamper(make_token("alice", secret=SECRET)))
    assert tampered.status_code == 401 and "set-cookie" not in tampered.headers
    # A Chainlit session token (signed with the login secret) is not a widget token.
    session_token = login_cookie(widget_server.url, "alice", "alice-password").split("access_token=")[1].split(";")[0]
    assert _widget_cookie(widget_server, session_token).status_code == 401
    assert _widget_cookie(widget_server, make_token("x", secret=SECRET, team="no-such-team")).status_code == 401


async def test_widget_and_password_users_do_not_see_each_other_s_threads(widget_server: ChorusServer) -> None:
    import asyncio

    cookie = "; ".join(f"{k}={v}" for k, v in _widget_cookie(
        widget_server, make_token("alice", secret=SECRET)).cookies.items())
    widget_alice = await ChatClient(widget_server, cookie=cookie, origin=SITE).connect()
    await widget_alice.answer_to("What time is it in Tokyo?", "Asia/Tokyo")
    await asyncio.sleep(1.0)
    await widget_alice.sio.disconnect()
    password_alice = ChatClient(widget_server, cookie=login_cookie(widget_server.url, "alice", "alice-password"),
                                thread_id=widget_alice.thread_id)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await password_alice.connect()


def test_the_page_has_a_strict_csp_and_loads_nothing_from_elsewhere(widget_server: ChorusServer) -> None:
    page = httpx.get(widget_server.url + "/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["img-src"] == "'self' data: blob:"
    assert directives["object-src"] == "'none'"
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"]
    assert directives["frame-ancestors"] == f"'self' {SITE} http://127.0.0.1:9"
    # Every inline script of the page is allowed by its hash, nothing else.
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert len(re.findall(r"'sha256-", directives["script-src"])) == len(inline) >= 1
    assert "googleapis" not in page.text and "jsdelivr" not in page.text
    assert page.headers["x-content-type-options"] == "nosniff"


# -- the middlewares on their own ----------------------------------------------------------------


async def _call(app: object, scope: dict[str, object]) -> list[dict[str, object]]:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[operator]
    return sent


async def _sets_cookie(scope: object, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                "headers": [(b"set-cookie", b"access_token=x; HttpOnly; Path=/; SameSite=lax")]})
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


_PROXIED_HTTPS = [(b"x-forwarded-proto", b"https")]


@pytest.mark.parametrize(("scope", "secure"), [
    ({"type": "http", "scheme": "https", "headers": []}, True),
    # HTTPS as a trusted proxy says: believed (uvicorn does the same for loopback by default)...
    ({"type": "http", "scheme": "http", "client": ("10.0.0.5", 4000), "headers": _PROXIED_HTTPS}, True),
    # ...but not from anyone else, who could say anything.
    ({"type": "http", "scheme": "http", "client": ("203.0.113.9", 4000), "headers": _PROXIED_HTTPS}, False),
    ({"type": "http", "scheme": "http", "headers": []}, False),  # plain http (localhost) keeps working
])
async def test_cookies_are_secure_over_https(scope: dict[str, object], secure: bool) -> None:
    import ipaddress

    from chorus.web.guard import SecureCookies, TrustedProxies

    app = TrustedProxies(SecureCookies(_sets_cookie), [ipaddress.ip_network("10.0.0.0/8")])
    sent = await _call(app, scope)
    cookie = dict(sent[0]["headers"])[b"set-cookie"]  # type: ignore[call-overload]
    assert cookie.endswith(b"; Secure") is secure


def test_markdown_images_in_model_output_become_text_even_when_streamed_in_pieces() -> None:
    from chorus.web.guard import ImageGuard, neutralise_images

    text = "see ![x](https://evil.example/?q=secret) and ![y][r]\n\n[r]: https://evil.example/r.png!"
    assert "![" not in neutralise_images(text)
    guard = ImageGuard()
    pieces = ["see !", "[x](https://evil", ".example/) !", "", "[y] wow!"]
    streamed = "".join(guard.feed(p) for p in pieces) + guard.flush()
    assert "![" not in streamed
    assert streamed.replace("\\", "") == "".join(pieces)  # nothing else changes
