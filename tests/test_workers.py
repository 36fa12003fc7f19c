"""Two Chorus workers behind nginx (deploy/nginx-chorus.conf) on one PostgreSQL database.

What an operator scaling out relies on: a chat stays on the worker that opened it, history
written through one worker is read through the other, a worker killed in the middle of a turn
keeps the user's message, and its chats carry on through the other worker.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chat_client import ChatClient, login_cookie
from conftest import IN_CI, ChorusServer, fresh_postgres_database
from workers import NginxProxy, nginx_binary

PASSWORD = "worker-test-password"


def require_nginx() -> None:
    if nginx_binary() is None:
        message = "the two-worker tests need Debian's nginx (`apt-get install nginx-light`; the test command " \
                  "installs it when run as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


class Cluster:
    def __init__(self, workers: list[ChorusServer], proxy: NginxProxy) -> None:
        self.workers = workers
        self.proxy = proxy
        self.url = proxy.url
        self.login = login_cookie(proxy.url, "wendy", PASSWORD)

    def worker_of(self, session_id: str) -> int:
        """The port of the worker nginx sends this chat's requests to."""
        response = httpx.get(f"{self.url}/chorus/status", timeout=10,
                             headers={"Cookie": f"X-Chainlit-Session-id={session_id}; {self.login}"})
        assert response.status_code == 200, response.text
        return int(response.headers["X-Chorus-Upstream"].rsplit(":", 1)[1])

    def session_on(self, port: int) -> str:
        """A chat session id that nginx places on the worker at ``port``."""
        for _ in range(200):
            session_id = str(uuid.uuid4())
            if self.worker_of(session_id) == port:
                return session_id
        raise AssertionError(f"no session id hashed to worker {port}")

    def client(self, session_id: str, thread_id: str | None = None) -> ChatClient:
        client = ChatClient(self, cookie=f"X-Chainlit-Session-id={session_id}; {self.login}",  # type: ignore[arg-type]
                            thread_id=thread_id)
        client.session_id = session_id  # the page sets this cookie to its session id before connecting
        return client


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_nginx()
    root = tmp_path_factory.mktemp("workers")
    with fresh_postgres_database() as database:
        shared = {
            "CHORUS_DATABASE_URL": database,
            # Every worker must accept the others' login cookies: one secret for all.
            "CHAINLIT_AUTH_SECRET": secrets.token_urlsafe(48),
            "CHORUS_OFFLINE_TOKEN_DELAY": "0.03",  # slow enough to kill a worker in the middle of a reply
        }
        workers = [ChorusServer(root / f"worker{i}", env=shared) for i in range(2)]
        (root / "worker0").mkdir()
        added = subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", "wendy", "--password-stdin"],
                               input=PASSWORD + "\n", text=True, env=workers[0].env, cwd=root / "worker0",
                               capture_output=True, timeout=120)
        assert added.returncode == 0, added.stderr
        proxy = None
        try:
            for worker in workers:
                worker.start()
            proxy = NginxProxy(root / "nginx", [w.port for w in workers]).start()
            yield Cluster(workers, proxy)
        finally:
            if proxy is not None:
                proxy.terminate()
            for worker in workers:
                worker.stop()


async def test_a_chat_stays_on_its_worker_and_history_is_shared(cluster: Cluster) -> None:
    first, second = (w.port for w in cluster.workers)
    on_first = cluster.session_on(first)
    assert {cluster.worker_of(on_first) for _ in range(10)} == {first}  # sticky

    client = await cluster.client(on_first).connect()
    try:
        reply = await client.answer_to("What time is it in Tokyo?", "Asia/Tokyo")
        assert reply["name"] == "assistant"
        # The chat lives in this worker's memory: an upload for it only works on the same worker.
        upload = await httpx.AsyncClient(timeout=30).post(
            f"{cluster.url}/project/file", params={"session_id": on_first},
            files={"file": ("notes.txt", b"Shared notes.", "text/plain")},
            headers={"Cookie": client.cookie or ""})
        assert upload.status_code == 200, upload.text
    finally:
        await client.sio.disconnect()

    # Read back through the other worker: the conversation is in the shared database.
    on_second = cluster.session_on(second)
    headers = {"Cookie": f"X-Chainlit-Session-id={on_second}; {cluster.login}"}
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(50):
            thread = await http.get(f"{cluster.url}/project/thread/{client.thread_id}", headers=headers)
            if thread.status_code == 200 and any("Asia/Tokyo" in (s.get("output") or "")
                                                 for s in thread.json()["steps"]):
                break
            await asyncio.sleep(0.2)
    assert thread.headers["X-Chorus-Upstream"].endswith(f":{second}")
    outputs = [s.get("output") or "" for s in thread.json()["steps"]]
    assert "What time is it in Tokyo?" in outputs
    assert any("Asia/Tokyo" in o for o in outputs)


async def test_a_worker_killed_mid_turn_keeps_the_message_and_its_chats_move_on(cluster: Cluster) -> None:
    victim, survivor = cluster.workers
    session_id = cluster.session_on(victim.port)
    client = await cluster.client(session_id).connect()
    question = "Hello! What can you do? Tell me everything about every agent."
    try:
        await client.send(question)
        for _ in range(200):  # the reply is streaming
            if client.tokens:
                break
            await asyncio.sleep(0.05)
        assert client.tokens, "the reply never started"
        assert victim.proc is not None
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
    finally:
        await client.sio.disconnect()

    # The other worker has the user's message: it was committed before any model was called.
    headers = {"Cookie": f"X-Chainlit-Session-id={cluster.session_on(survivor.port)}; {cluster.login}"}
    thread = httpx.get(f"{cluster.url}/project/thread/{client.thread_id}", headers=headers, timeout=30)
    assert thread.status_code == 200, thread.text
    assert question in [s.get("output") for s in thread.json()["steps"]]

    # The page reconnects the chat (same session, same conversation) through nginx, which now
    # sends it to the survivor: the conversation reopens there and goes on.
    assert cluster.worker_of(session_id) == survivor.port
    again = await cluster.client(session_id, thread_id=client.thread_id).connect()
    try:
        assert (await again.answer_to("What is 2 + 2?", "2 + 2 = 4"))["name"] == "mathematician"
    finally:
        await again.sio.disconnect()
    for _ in range(50):
        thread = httpx.get(f"{cluster.url}/project/thread/{client.thread_id}", headers=headers, timeout=30)
        outputs = [s.get("output") for s in thread.json()["steps"]]
        if "What is 2 + 2?" in outputs:
            break
        await asyncio.sleep(0.2)
    assert question in outputs and "What is 2 + 2?" in outputs  # one conversation, both messages


def test_the_deployment_file_is_valid_nginx(tmp_path: Path) -> None:
    """`nginx -t` on the shipped file, as an operator would check it before a reload."""
    require_nginx()
    from workers import render_config

    conf = render_config(tmp_path, 8000, [8001, 8002])
    checked = subprocess.run([nginx_binary() or "nginx", "-t", "-p", str(tmp_path), "-c", str(conf)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
