"""Rate limits on what users send, against real servers: a user over CHORUS_RATE_LIMITS is told
when they may send again and their message is kept (stored, unanswered); the page and the API
count together; uploads have their own limit; with Redis two workers share the counts (without
it each would count alone); an unreachable Redis lets everything through and says so."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa
from chat_client import ChatClient, login_cookie
from conftest import IN_CI, ChorusServer
from test_api import make_keys

REDIS_URL = os.environ.get("CHORUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
QUESTION = "Which albums does AC/DC have?"


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        message = f"Redis is not reachable at {REDIS_URL} ({type(exc).__name__}); set CHORUS_TEST_REDIS_URL"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _server(workdir: Path, name: str, **env: str) -> ChorusServer:
    srv = ChorusServer(workdir, env={"CHORUS_MEMORY": "false", "CHORUS_OFFLINE_TOKEN_DELAY": "0.002", **env})
    srv.log = workdir / f"{name}.log"
    return srv


def _add(srv: ChorusServer, user: str) -> None:
    srv.workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", user, "--password-stdin"],
                   input=f"{user}-password-1\n", text=True, env=srv.env, cwd=srv.workdir, check=True, timeout=120)


async def _chat(srv: ChorusServer, user: str) -> ChatClient:
    chat = ChatClient(srv, cookie=login_cookie(srv.url, user, f"{user}-password-1"))
    chat.chat_profile = "Music store"
    return await chat.connect()


async def _refusal(chat: ChatClient, text: str) -> str:
    chat.messages.clear()
    await chat.send(text)
    found = await chat.wait_for(lambda m: "faster than this server allows" in (m.get("output") or ""))
    return str(found["output"])


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[ChorusServer, str]]:
    srv = _server(tmp_path / "w", "server", CHORUS_RATE_LIMITS="2/minute", CHORUS_UPLOAD_RATE_LIMITS="1/minute")
    _add(srv, "ann")
    key = make_keys(srv.workdir / "data", ("ann", "ann", None))["ann"]
    srv.start()
    yield srv, key
    srv.stop()


async def test_a_user_over_the_limit_is_told_when_to_send_again_and_keeps_the_message(
        limited: tuple[ChorusServer, str]) -> None:
    srv, key = limited
    chat = await _chat(srv, "ann")
    try:
        await chat.answer_to(QUESTION, "Let There Be Rock")
        await chat.answer_to("Which albums does Queen have?", "A Night at the Opera")
        said = await _refusal(chat, "Which albums does Metallica have?")
        wait = int(re.search(r"send again in (\d+) s", said).group(1))  # type: ignore[union-attr]
        assert 1 <= wait <= 60 and "2 per 1 minute" in said and "kept" in said
        await asyncio.sleep(1.0)
        assert not any("Metallica" in (m.get("output") or "") and m.get("type") == "assistant_message"
                       for m in chat.messages)  # not answered
    finally:
        await chat.sio.disconnect()
    engine = sa.create_engine(f"sqlite:///{srv.workdir / 'data' / 'chorus.db'}")
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT output FROM steps WHERE type = 'user_message' AND output = :q"),
                            {"q": "Which albums does Metallica have?"}).all()
    engine.dispose()
    assert len(kept) == 1  # nothing typed is lost
    # The API counts with the page: Ann has used her two messages.
    api = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)
    try:
        with pytest.raises(openai.RateLimitError) as refused:
            await api.chat.completions.create(model="chorus/music-store",
                                              messages=[{"role": "user", "content": QUESTION}])
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert "faster than this server allows" in str(refused.value)
    finally:
        await api.close()


async def test_uploads_have_their_own_limit(limited: tuple[ChorusServer, str]) -> None:
    srv, _ = limited
    chat = await _chat(srv, "ann")
    try:
        first = await chat.upload("a.txt", b"first file\n", "text/plain")
        assert first.status_code == 200, first.text
        second = await chat.upload("b.txt", b"second file\n", "text/plain")
        assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
        assert "faster than this server allows" in second.json()["detail"]
    finally:
        await chat.sio.disconnect()


async def test_with_redis_two_workers_count_together(tmp_path: Path) -> None:
    _redis_or_skip()
    user = "u" + uuid.uuid4().hex[:10]  # Redis outlives the test: a name of its own
    env = {"CHORUS_RATE_LIMITS": "2/minute", "CHORUS_REDIS_URL": REDIS_URL}
    first = _server(tmp_path / "w", "first", **env)
    _add(first, user)
    second = _server(tmp_path / "w", "second", **env)
    first.start()
    second.start()
    try:
        a = await _chat(first, user)
        b = await _chat(second, user)
        await a.answer_to(QUESTION, "Let There Be Rock")
        await b.answer_to("Which albums does Queen have?", "A Night at the Opera")
        assert "faster than this server allows" in await _refusal(a, "Which albums does Metallica have?")
        await a.sio.disconnect()
        await b.sio.disconnect()
    finally:
        second.stop()
        first.stop()


async def test_an_unreachable_redis_lets_messages_through_and_says_so(tmp_path: Path) -> None:
    srv = _server(tmp_path / "w", "server", CHORUS_RATE_LIMITS="1/minute", CHORUS_REDIS_URL="redis://127.0.0.1:9/0")
    _add(srv, "ann")
    srv.start()
    try:
        chat = await _chat(srv, "ann")
        await chat.answer_to(QUESTION, "Let There Be Rock")
        await chat.answer_to("Which albums does Queen have?", "A Night at the Opera")  # over 1/minute: let through
        await chat.sio.disconnect()
        assert httpx.get(srv.url + "/healthz", timeout=30).status_code == 200
    finally:
        srv.stop()
    assert "rate limits are not applied" in srv.output()


async def test_visitors_without_a_login_count_by_their_own_address(tmp_path: Path) -> None:
    """Behind a proxy on this machine (uvicorn believes its X-Forwarded-For), two visitors from two
    addresses each have their own count."""
    srv = _server(tmp_path / "w", "server", CHORUS_RATE_LIMITS="1/minute").start()

    async def visitor(address: str) -> ChatClient:
        chat = ChatClient(srv)
        chat.chat_profile = "Music store"
        await chat.sio.connect(srv.url, socketio_path="/ws/socket.io", transports=["websocket"],
                               auth={"clientType": "webapp", "sessionId": chat.session_id, "threadId": chat.thread_id,
                                     "chatProfile": "Music store"},
                               headers={"X-Forwarded-For": address}, wait_timeout=20)
        await chat.sio.emit("connection_successful")
        return chat

    try:
        first = await visitor("198.51.100.1")
        await first.answer_to(QUESTION, "Let There Be Rock")
        assert "faster than this server allows" in await _refusal(first, "Which albums does Queen have?")
        second = await visitor("198.51.100.2")
        await second.answer_to("Which albums does Queen have?", "A Night at the Opera")
        await first.sio.disconnect()
        await second.sio.disconnect()
    finally:
        srv.stop()
