"""A socket.io client that speaks the Chainlit page's protocol, for tests that drive a real server."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

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
        self.transports = ["websocket"]  # a browser starts with long-polling, then upgrades
        self.chat_profile: str | None = None  # the team's title, as the page sends it once one is chosen
        self.messages: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        # Every piece of streamed text as it arrived: (monotonic time, message id, text).
        self.streamed: list[tuple[float, str, str]] = []
        self.deleted: list[str] = []
        self.sio.on("new_message", self._on_message)
        self.sio.on("stream_start", self._on_stream_start)
        self.sio.on("update_message", self._on_message)
        self.sio.on("stream_token", self._on_token)
        self.sio.on("delete_message", lambda data: self.deleted.append(data.get("id", "")))

    async def _on_message(self, data: dict[str, Any]) -> None:
        self.messages.append(data)

    async def _on_stream_start(self, data: dict[str, Any]) -> None:
        self.messages.append(data)
        self.streamed.append((time.monotonic(), data.get("id", ""), data.get("output") or ""))

    def _on_token(self, data: dict[str, Any]) -> None:
        self.tokens.append(data.get("token", ""))
        self.streamed.append((time.monotonic(), data.get("id", ""), data.get("token", "")))

    async def connect(self) -> ChatClient:
        await self.sio.connect(
            self.server.url,
            socketio_path="/ws/socket.io",
            transports=self.transports,
            auth={"clientType": "webapp", "sessionId": self.session_id, "threadId": self.thread_id,
                  **({"chatProfile": self.chat_profile} if self.chat_profile else {})},
            headers={**({"Cookie": self.cookie} if self.cookie else {}),
                     **({"Origin": self.origin} if self.origin else {})},
            wait_timeout=20,  # as long as a browser's socket.io client waits (python-socketio: 1 s)
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


def login_cookie(url: str, name: str, password: str) -> str:
    """Log in with a password account; the Cookie header value that carries the login."""
    import httpx

    response = httpx.post(f"{url}/login", data={"username": name, "password": password}, timeout=30)
    assert response.status_code == 200, response.text
    return "; ".join(f"{k}={v}" for k, v in response.cookies.items())


async def saved_state(server: ChorusServer, thread: str, user: str) -> str:
    """The team's state after ``thread``'s latest turn, as the server reads it back (JSON text; "" if none)."""
    import json

    from chorus.store import make_engine
    from chorus.store.checkpoints import CheckpointStore

    engine = make_engine(f"sqlite+aiosqlite:///{server.workdir / 'data' / 'chorus.db'}")
    try:
        saved = await CheckpointStore(engine).load(thread, user)
    finally:
        await engine.dispose()
    return "" if saved is None else json.dumps(saved.state, default=str)
