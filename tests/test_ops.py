"""What an operator points their tools at, against real servers: ``/metrics`` scraped and parsed
with prometheus-client's own parser (values checked against the turns sent, summed over two
``chorus run`` processes sharing a data directory), kept from other machines unless a token is
given; ``/healthz``; ``/readyz`` ready, degraded when tracing's server is down, unavailable (503)
while PostgreSQL refuses connections, and ready again after."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from chat_client import ChatClient
from conftest import ChorusServer, fresh_postgres_database
from prometheus_client.parser import text_string_to_metric_families

QUESTION = "Which albums does AC/DC have?"


def scrape(srv: ChorusServer, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    answer = httpx.get(srv.url + "/metrics", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, w) in ls for k, w in labels.items()))


async def _music_turn(srv: ChorusServer) -> ChatClient:
    chat = ChatClient(srv)
    chat.chat_profile = "Music store"
    await chat.connect()
    await chat.answer_to(QUESTION, "Let There Be Rock")
    return chat


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChorusServer, ChorusServer]]:
    """Two `chorus run` processes on one data directory (as two workers on one machine)."""
    workdir = tmp_path_factory.mktemp("ops")
    env = {"CHORUS_MEMORY": "false", "CHORUS_OFFLINE_TOKEN_DELAY": "0.005"}
    first = ChorusServer(workdir, env=env).start()
    second = ChorusServer(workdir, env=env)
    second.log = workdir / "server-2.log"
    second.start()
    yield first, second
    second.stop()
    first.stop()


async def test_metrics_count_the_turns_of_every_process(two_servers: tuple[ChorusServer, ChorusServer]) -> None:
    first, second = two_servers
    before = await asyncio.to_thread(scrape, first)
    chats = [await _music_turn(first), await _music_turn(first), await _music_turn(second)]
    try:
        await asyncio.sleep(2.5)  # the open-chats gauge is refreshed every 2 s
        for srv in (first, second):  # either process answers with both processes' figures
            after = await asyncio.to_thread(scrape, srv)
            turns = total(after, "chorus_turns_total", team="music-store") - total(
                before, "chorus_turns_total", team="music-store")
            assert turns == 3, after
            timed = total(after, "chorus_turn_seconds_count", team="music-store") - total(
                before, "chorus_turn_seconds_count", team="music-store")
            assert timed == 3
            assert total(after, "chorus_first_token_seconds_count", team="music-store") >= 3
            assert total(after, "chorus_tokens_total", team="music-store", kind="completion") > 0
            assert total(after, "chorus_model_calls_total", team="music-store", agent="catalog") >= 3
            assert total(after, "chorus_active_chats") >= 3
            assert total(after, "chorus_runs", status="queued") == 0
            assert total(after, "chorus_plugin_problems") == 0
    finally:
        for chat in chats:
            await chat.sio.disconnect()


def test_metrics_answer_this_machine_only_unless_a_token_is_given(tmp_path: Path) -> None:
    srv = ChorusServer(tmp_path, env={"CHORUS_MEMORY": "false"}).start()
    try:
        # Through a proxy on this machine (uvicorn believes loopback's X-Forwarded-For): from elsewhere.
        far = httpx.get(srv.url + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=30)
        assert far.status_code == 403 and "CHORUS_METRICS_TOKEN" in far.text
        assert httpx.get(srv.url + "/metrics", timeout=30).status_code == 200
    finally:
        srv.stop()
    srv = ChorusServer(tmp_path, env={"CHORUS_MEMORY": "false", "CHORUS_METRICS_TOKEN": "s3cret-scrape"}).start()
    try:
        assert httpx.get(srv.url + "/metrics", timeout=30).status_code == 401
        assert httpx.get(srv.url + "/metrics", headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
        assert scrape(srv, Authorization="Bearer s3cret-scrape", **{"X-Forwarded-For": "203.0.113.9"})
    finally:
        srv.stop()


def test_health_and_a_degraded_tracing_server(tmp_path: Path) -> None:
    srv = ChorusServer(tmp_path / "a", env={"CHORUS_MEMORY": "false", "CHORUS_TRACING": "true"}).start()
    try:
        assert httpx.get(srv.url + "/healthz", timeout=30).json()["status"] == "ok"
        ready = httpx.get(srv.url + "/readyz", timeout=30)
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ready", body
        assert body["checks"]["database"]["state"] == "ok" and body["checks"]["memory"]["state"] == "off"
        assert body["checks"]["tracing"]["state"] == "ok"
    finally:
        srv.stop()
    # Traces go to an MLflow server that does not answer: chat works, the process is degraded.
    srv = ChorusServer(tmp_path / "b", env={"CHORUS_MEMORY": "false", "CHORUS_TRACING": "true",
                                            "CHORUS_MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}).start()
    try:
        ready = httpx.get(srv.url + "/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
        assert ready.json()["checks"]["tracing"]["state"] == "down"
    finally:
        srv.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def test_readyz_is_unavailable_while_the_database_refuses_and_ready_after(tmp_path: Path, postgres_url: str) -> None:
    from workers import POSTGRES_ADMIN

    name = postgres_url.rsplit("/", 1)[1]
    srv = ChorusServer(tmp_path, env={"CHORUS_MEMORY": "false", "CHORUS_DATABASE_URL": postgres_url}).start()
    admin = sa.create_engine(POSTGRES_ADMIN.replace("+asyncpg", "+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        _until_ready(srv)
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                         {"d": name})
        down = httpx.get(srv.url + "/readyz", timeout=30)
        assert down.status_code == 503 and down.json()["status"] == "unavailable", down.text
        assert down.json()["checks"]["database"]["state"] == "down"
        assert httpx.get(srv.url + "/healthz", timeout=30).status_code == 200  # the process still serves
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        _until_ready(srv)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        srv.stop()


def _until_ready(srv: ChorusServer, timeout: float = 30) -> None:
    """/readyz says ``ready`` within ``timeout`` (background runs start a moment after the page)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(srv.url + "/readyz", timeout=30).json()
        if body["status"] == "ready" and body["checks"]["background_runs"]["state"] == "ok":
            return
        assert time.monotonic() < deadline, body
        time.sleep(0.5)

