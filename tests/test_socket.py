"""Bad input over Chainlit's socket (the path the browser uses): clear errors, the session keeps working."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import socketio
from conftest import ChorusServer


class ChatClient:
    """A socket.io client speaking the Chainlit page's protocol; records what the server sends."""

    def __init__(self, server: ChorusServer, *, cookie: str | None = None, thread_id: str | None = None,
                 origin: str | None = None) -> None:
        self.server = server
        self.cookie = cookie
        self.origin = origin  # the page the socket is opened from (a browser always says)
        self.thread_id = thread_id or str(uuid.uuid4())
        self.session_id = str(uuid.uuid4())
        self.sio = socketio.AsyncClient(reconnection=False)
        self.messages: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        self.sio.on("new_message", self._on_message)
        self.sio.on("stream_start", self._on_message)
        self.sio.on("update_message", self._on_message)
        self.sio.on("stream_token", lambda data: self.tokens.append(data.get("token", "")))

    async def _on_message(self, data: dict[str, Any]) -> None:
        self.messages.append(data)

    async def connect(self) -> ChatClient:
        await self.sio.connect(
            self.server.url,
            socketio_path="/ws/socket.io",
            transports=["websocket"],
            auth={"clientType": "webapp", "sessionId": self.session_id, "threadId": self.thread_id},
            headers={**({"Cookie": self.cookie} if self.cookie else {}),
                     **({"Origin": self.origin} if self.origin else {})},
        )
        await self.sio.emit("connection_successful")
        return self

    async def upload(self, name: str, data: bytes, mime: str) -> Any:
        """POST a file the way the page's paperclip does; the httpx response."""
        import httpx

        async with httpx.AsyncClient(timeout=60) as http:
            return await http.post(
                f"{self.server.url}/project/file", params={"session_id": self.session_id},
                files={"file": (name, data, mime)}, headers={"Cookie": self.cookie} if self.cookie else {},
            )

    async def send(
        self, text: str, *, event: str = "client_message", step_id: str | None = None, files: list[str] = ()  # type: ignore[assignment]
    ) -> str:
        step = {
            "id": step_id or str(uuid.uuid4()),
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": datetime.now(UTC).isoformat(),
        }
        await self.sio.emit(event, {"message": step, "fileReferences": [{"id": f} for f in files]})
        return str(step["id"])

    async def wait_for(self, predicate: Any, timeout: float = 20) -> dict[str, Any]:
        async def poll() -> dict[str, Any]:
            while True:
                for m in self.messages:
                    if predicate(m):
                        return m
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(poll(), timeout)

    async def answer_to(self, text: str, needle: str) -> dict[str, Any]:
        self.messages.clear()
        await self.send(text)
        return await self.wait_for(
            lambda m: m.get("type") == "assistant_message" and needle in (m.get("output") or "")
        )


async def test_oversized_message_is_refused_and_the_session_keeps_working(server: ChorusServer) -> None:
    client = await ChatClient(server).connect()
    try:
        refusal = await client.answer_to("x" * 1_000_000, "the limit is 20,000")
        assert refusal["isError"] is True and "1,000,000 characters" in refusal["output"]
        assert client.sio.connected
        reply = await client.answer_to("What time is it in Tokyo?", "Asia/Tokyo")
        assert reply["name"] == "assistant"
    finally:
        await client.sio.disconnect()


async def test_empty_and_invalid_unicode_messages(server: ChorusServer) -> None:
    client = await ChatClient(server).connect()
    try:
        empty = await client.answer_to("   ", "Your message is empty")
        assert empty["isError"] is True
        # A lone surrogate is what invalid UTF-8 becomes after a lenient decode.
        reply = await client.answer_to("hello \udcff there", "Here is what this team can do")
        assert reply["name"] == "assistant"
    finally:
        await client.sio.disconnect()


async def test_malformed_payload_does_not_take_the_server_down(server: ChorusServer) -> None:
    client = await ChatClient(server).connect()
    try:
        await client.sio.emit("client_message", {"message": {"id": "not-a-uuid"}})
        await client.sio.emit("client_message", "not even a dict")
        await asyncio.sleep(0.5)
        reply = await client.answer_to("How do I write a plugin?", "entry point")
        assert reply["name"] == "guide"
    finally:
        await client.sio.disconnect()


async def test_editing_a_message_rewinds_the_team_and_answers_the_new_text(server: ChorusServer) -> None:
    client = await ChatClient(server).connect()
    try:
        client.messages.clear()
        first = await client.send("What time is it in Paris?")
        await client.wait_for(
            lambda m: m.get("type") == "assistant_message" and "Europe/Paris" in (m.get("output") or "")
        )
        await client.answer_to("What is 2 + 2?", "2 + 2 = 4")
        await asyncio.sleep(0.5)  # let the turn finish
        client.messages.clear()
        await client.send("What time is it in Tokyo?", event="edit_message", step_id=first)
        await client.wait_for(lambda m: "rewound" in (m.get("output") or ""))
        reply = await client.wait_for(
            lambda m: m.get("type") == "assistant_message" and "Asia/Tokyo" in (m.get("output") or "")
        )
        assert reply["name"] == "assistant"
    finally:
        await client.sio.disconnect()


async def test_attached_files_reach_the_team_within_type_and_size_limits(server: ChorusServer) -> None:
    client = await ChatClient(server).connect()
    try:
        policy = "# Store policy\nShipping is free over 50 euros.\nRefunds take five days.\n"
        uploaded = await client.upload("policy.md", policy.encode(), "text/markdown")
        assert uploaded.status_code == 200, uploaded.text
        client.messages.clear()
        await client.send("How long do refunds take?", files=[uploaded.json()["id"]])
        reply = await client.wait_for(
            lambda m: m.get("type") == "assistant_message" and "Refunds take five days." in (m.get("output") or "")
        )
        assert "policy.md" in reply["output"] and "Shipping" not in reply["output"]

        too_big = await client.upload("big.txt", b"x" * (11 * 1024 * 1024), "text/plain")
        assert too_big.status_code == 413 and "limit is 10 MB" in too_big.json()["detail"]
        wrong_type = await client.upload("photo.exe", b"MZ\x90\x00", "application/x-msdownload")
        assert wrong_type.status_code == 400 and "not allowed" in wrong_type.json()["detail"]

        # A file the team cannot read is refused with its name; the session goes on.
        binary = await client.upload("data.txt", b"\x00\x01" * 64, "text/plain")
        client.messages.clear()
        await client.send("what is in it?", files=[binary.json()["id"]])
        refusal = await client.wait_for(lambda m: m.get("isError") and "data.txt" in (m.get("output") or ""))
        assert "not a text file" in refusal["output"]
        assert (await client.answer_to("What is 2 + 2?", "2 + 2 = 4"))["name"] == "mathematician"
    finally:
        await client.sio.disconnect()


def _login_cookie(server: ChorusServer, name: str, password: str) -> str:
    import httpx

    response = httpx.post(f"{server.url}/login", data={"username": name, "password": password}, timeout=30)
    assert response.status_code == 200, response.text
    return "; ".join(f"{k}={v}" for k, v in response.cookies.items())


async def test_another_users_thread_cannot_be_joined_over_the_socket(tmp_path_factory: pytest.TempPathFactory) -> None:
    import subprocess
    import sys

    workdir = tmp_path_factory.mktemp("sockets")
    srv = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0"})
    for name in ("alice", "bob"):
        subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", name, "--password-stdin"],
                       input=f"{name}-password\n", text=True, env=srv.env, cwd=workdir, check=True, timeout=120)
    srv.start()
    try:
        alice = await ChatClient(srv, cookie=_login_cookie(srv, "alice", "alice-password")).connect()
        await alice.answer_to("What time is it in Tokyo?", "Asia/Tokyo")
        await asyncio.sleep(1.0)  # the thread and its steps are written
        await alice.sio.disconnect()

        bob_cookie = _login_cookie(srv, "bob", "bob-password")
        intruder = ChatClient(srv, cookie=bob_cookie, thread_id=alice.thread_id)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await intruder.connect()
        assert not any("Asia/Tokyo" in (m.get("output") or "") for m in intruder.messages)

        # A crafted thread id is refused before it reaches the database; the server keeps serving.
        crafted = await ChatClient(srv, cookie=bob_cookie, thread_id="x') OR ('1'='1").connect()
        await crafted.send("hello")
        await asyncio.sleep(1.0)
        await crafted.sio.disconnect()
        fine = await ChatClient(srv, cookie=bob_cookie).connect()
        reply = await fine.answer_to("What is 2 + 2?", "2 + 2 = 4")
        assert reply["name"] == "mathematician"
        await fine.sio.disconnect()
    finally:
        srv.stop()
