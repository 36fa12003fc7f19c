"""Logins end when they should: logout, a password change, a removed account, a widget token's
expiry; and forwarded headers count only from the operator's proxies. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import socketio
from chat_client import ChatClient, login_cookie
from conftest import ChorusServer, fresh_postgres_database

from chorus.widget import make_token

SECRET = "test-widget-secret-0123456789-0123456789-0123456789-012345"
SITE = "https://shop.example.com"


def _cli(srv: ChorusServer, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chorus.cli", *args], input=stdin, capture_output=True, text=True,
                          env=srv.env, cwd=srv.workdir, timeout=120)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusServer]:
    env = {"CHORUS_OFFLINE_TOKEN_DELAY": "0", "CHORUS_MEMORY": "false", "CHORUS_ALLOWED_ORIGINS": SITE,
           "CHORUS_WIDGET_SECRET": SECRET, "CHORUS_WIDGET_SESSION_MINUTES": "0.05"}  # 3 s, for the test

    def serve(extra: dict[str, str]) -> Iterator[ChorusServer]:
        server = ChorusServer(tmp_path_factory.mktemp(f"sessions-{request.param}"), env={**env, **extra})
        server.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("alice", "bob", "carol"):
            added = _cli(server, "users", "add", name, "--password-stdin", stdin=f"{name}-password\n")
            assert added.returncode == 0, added.stderr
        server.start()
        try:
            yield server
        finally:
            server.stop()

    if request.param == "sqlite":
        yield from serve({})
    else:
        with fresh_postgres_database() as url:
            yield from serve({"CHORUS_DATABASE_URL": url})


def _rows(srv: ChorusServer, sql: str, **params: object) -> list[dict[str, object]]:
    """Rows of the server's own database (SQLite in its data directory, or its PostgreSQL one)."""
    import sqlalchemy as sa

    url = srv.env.get("CHORUS_DATABASE_URL", "").replace("+asyncpg", "+psycopg") or \
        f"sqlite:///{srv.workdir / 'data' / 'chorus.db'}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def _user(srv: ChorusServer, cookie: str) -> int:
    return httpx.get(f"{srv.url}/user", headers={"Cookie": cookie}, timeout=30).status_code


async def test_logging_out_ends_that_login(srv: ChorusServer) -> None:
    cookie = login_cookie(srv.url, "alice", "alice-password")
    other_device = login_cookie(srv.url, "alice", "alice-password")
    assert _user(srv, cookie) == 200
    out = httpx.post(f"{srv.url}/logout", headers={"Cookie": cookie}, timeout=30)
    assert out.status_code == 200, out.text
    assert _user(srv, cookie) == 401  # the old cookie, replayed after logout
    with pytest.raises(socketio.exceptions.ConnectionError):
        await ChatClient(srv, cookie=cookie).connect()
    assert _user(srv, other_device) == 200  # her other login is not this one


async def test_a_password_change_ends_every_login_made_with_the_old_one(srv: ChorusServer) -> None:
    cookie = login_cookie(srv.url, "bob", "bob-password")
    chat = await ChatClient(srv, cookie=cookie).connect()  # a page left open
    try:
        await chat.answer_to("What is 2 + 2?", "2 + 2 = 4")
        changed = _cli(srv, "users", "passwd", "bob", "--password-stdin", stdin="bob-new-password\n")
        assert changed.returncode == 0, changed.stderr
        assert _user(srv, cookie) == 401
        chat.messages.clear()
        await chat.send("What is 3 + 4?")
        ended = await chat.wait_for(lambda m: m.get("isError") and "log in again" in (m.get("output") or ""))
        assert ended
        await asyncio.sleep(1.0)
        assert not any("3 + 4 = 7" in (m.get("output") or "") for m in chat.messages)
        assert _rows(srv, 'SELECT "id" FROM steps WHERE "output" = :t', t="What is 3 + 4?") == []  # not stored
    finally:
        await chat.sio.disconnect()
    refused = httpx.post(f"{srv.url}/login", data={"username": "bob", "password": "bob-password"}, timeout=30)
    assert refused.status_code == 401
    fresh = login_cookie(srv.url, "bob", "bob-new-password")
    assert _user(srv, fresh) == 200


def test_a_removed_account_opens_nothing_even_when_made_again(srv: ChorusServer) -> None:
    cookie = login_cookie(srv.url, "carol", "carol-password")
    assert _user(srv, cookie) == 200
    assert _cli(srv, "users", "remove", "carol").returncode == 0
    assert _user(srv, cookie) == 401
    assert _rows(srv, "SELECT id FROM users WHERE identifier = :n", n="carol") == []  # the old cookie made none
    again = _cli(srv, "users", "add", "carol", "--password-stdin", stdin="carol-password-2\n")
    assert again.returncode == 0, again.stderr
    assert _user(srv, cookie) == 401  # a new account of the same name inherits no old login


def test_a_widget_session_lives_no_longer_than_its_token(srv: ChorusServer) -> None:
    token = make_token("visitor-7", secret=SECRET, ttl_s=3)
    signed_in = httpx.post(f"{srv.url}/auth/jwt", headers={"Authorization": f"Bearer {token}", "Origin": SITE},
                           timeout=30)
    assert signed_in.status_code == 200, signed_in.text
    max_age = re.search(r"(?i)max-age=(\d+)", signed_in.headers["set-cookie"])
    assert max_age is not None and int(max_age.group(1)) <= 3
    cookie = "; ".join(f"{k}={v}" for k, v in signed_in.cookies.items())
    assert _user(srv, cookie) == 200
    time.sleep(4.5)
    assert _user(srv, cookie) == 401


def test_a_widget_session_outlives_a_short_token_for_its_configured_time() -> None:
    from chorus.web.logins import widget_session_expiry

    now = 1_000_000.0
    assert widget_session_expiry(int(now) + 300, 60, now=now) == now + 3600  # a 5-minute token: an hour's chat
    assert widget_session_expiry(int(now) + 7200, 60, now=now) == now + 7200  # a longer token: its own life
    assert widget_session_expiry(int(now) + 90_000, 24 * 60 * 60, now=now) <= now + 24 * 3600  # never past a day


def test_a_widget_cookie_from_before_with_chainlits_15_day_life_is_refused(srv: ChorusServer) -> None:
    import jwt

    secret = srv.env.get("CHAINLIT_AUTH_SECRET") or (srv.workdir / "data" / "auth_secret").read_text().strip()
    now = int(time.time())
    legacy = jwt.encode({"identifier": "widget:old-visitor", "display_name": None, "metadata": {"provider": "widget"},
                         "iat": now, "exp": now + 15 * 24 * 3600}, secret, algorithm="HS256")
    assert _user(srv, f"access_token={legacy}") == 401


# -- forwarded headers, in-process --------------------------------------------------------------


async def _origin_answer(client: str, proxies: list[str], forwarded_host: str) -> tuple[int, str]:
    """(the status, the scheme the app saw) of a cross-origin request from ``client`` that claims
    through forwarded headers to come from the page itself over HTTPS."""
    from chorus.settings import Settings
    from chorus.web.guard import OriginGuard, TrustedProxies

    seen: list[str] = []

    async def ok(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["scheme"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    networks = Settings(trusted_proxies=",".join(proxies)).trusted_proxy_networks()
    app = TrustedProxies(OriginGuard(ok, allowed=[]), networks)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=(client, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.internal:8000") as http:
        answer = await http.get("/user", headers={"Origin": f"https://{forwarded_host}",
                                                  "X-Forwarded-Host": forwarded_host, "X-Forwarded-Proto": "https",
                                                  "X-Forwarded-For": "198.51.100.7"})
    return answer.status_code, (seen or ["-"])[0]


async def test_forwarded_host_counts_only_from_a_trusted_proxy() -> None:
    assert await _origin_answer("203.0.113.9", [], "evil.example") == (403, "-")  # anyone can send the header
    assert await _origin_answer("127.0.0.1", [], "evil.example") == (403, "-")  # the default believes nobody's
    # The operator's proxy said so: the page's host (behind it) and HTTPS are believed.
    assert await _origin_answer("10.1.2.3", ["10.0.0.0/8"], "chat.example.org") == (200, "https")
    assert await _origin_answer("203.0.113.9", ["10.0.0.0/8"], "chat.example.org") == (403, "-")


def test_a_malformed_proxy_list_stops_the_server_with_a_clear_message(tmp_path: object) -> None:
    from pathlib import Path

    srv = ChorusServer(Path(str(tmp_path)), env={"CHORUS_TRUSTED_PROXIES": "10.0.0.0/8, nginx"})
    result = subprocess.run([sys.executable, "-m", "chorus.cli", "run", "--port", str(srv.port)], env=srv.env,
                            cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "'nginx' is not an address or network" in result.stderr
