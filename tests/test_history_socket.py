"""A page whose socket drops in the middle of a reply and reconnects (same session) keeps its
running turn: the reply arrives, the page is never told the team is idle while it is still
answering, nothing false is stored, and the team's saved state has the whole exchange."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from chat_client import ChatClient, login_cookie, saved_state
from conftest import ChorusServer


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusServer]:
    server = ChorusServer(tmp_path_factory.mktemp("reconnect"),
                          env={"CHORUS_OFFLINE_TOKEN_DELAY": "0.06", "CHORUS_MEMORY": "false"})
    server.workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", "dana", "--password-stdin"],
                   input="dana-password\n", text=True, env=server.env, cwd=server.workdir, check=True, timeout=120)
    server.start()
    yield server
    server.stop()


class _Recording(ChatClient):
    """Also records the page's busy/idle signals, in order, with the messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signals: list[str] = []
        self.sio.on("task_start", lambda *_: self.signals.append("task_start"))
        self.sio.on("task_end", lambda *_: self.signals.append("task_end"))

    async def _on_message(self, data: dict[str, Any]) -> None:
        await super()._on_message(data)
        if data.get("type") == "assistant_message":
            self.signals.append("reply")


async def test_a_reconnect_mid_reply_keeps_the_turn_and_the_teams_memory(srv: ChorusServer) -> None:
    cookie = login_cookie(srv.url, "dana", "dana-password")
    first = await ChatClient(srv, cookie=cookie).connect()
    await first.answer_to("What is 2 + 2?", "2 + 2 = 4")  # the thread exists
    first.messages.clear()
    first.tokens.clear()
    await first.send("What can you do?")
    for _ in range(200):  # until the reply is streaming
        if len(first.tokens) >= 3:
            break
        await asyncio.sleep(0.05)
    assert len(first.tokens) >= 3, "the reply did not start streaming"
    await first.sio.disconnect()  # the network drops...
    await asyncio.sleep(0.5)

    again = _Recording(srv, cookie=cookie, thread_id=first.thread_id)  # ...and the page reconnects
    again.session_id = first.session_id
    await again.connect()
    reply = await again.wait_for(lambda m: m.get("type") == "assistant_message" and m.get("name") != "Chorus"
                                 and len(m.get("output") or "") > 40, timeout=60)
    assert reply
    await asyncio.sleep(1.5)  # the turn's checkpoint is written
    # Never idle while the team was still answering: no task_end before the reply.
    assert "task_end" not in again.signals[: again.signals.index("reply")], again.signals
    notes = [m.get("output") or "" for m in again.messages]
    assert not any("no saved memory" in n for n in notes), notes
    await again.sio.disconnect()

    db = sqlite3.connect(srv.workdir / "data" / "chorus.db")
    try:
        stored = [row[0] for row in db.execute('SELECT "output" FROM steps WHERE "threadId" = ?', (first.thread_id,))]
    finally:
        db.close()
    assert not any("no saved memory" in (s or "") for s in stored), stored
    saved = await saved_state(srv, first.thread_id, "dana")  # as the server reads it back
    said = json.dumps(reply["output"][:40])[1:-1]  # as it appears inside the saved JSON
    assert "What can you do?" in saved and said in saved  # the team remembers that exchange



async def test_a_refused_over_long_message_is_stored_cut_short(srv: ChorusServer) -> None:
    cookie = login_cookie(srv.url, "dana", "dana-password")
    chat = await ChatClient(srv, cookie=cookie).connect()
    try:
        pasted = "x" * 2_097_152  # a 2 MB paste, over CHORUS_MAX_MESSAGE_CHARS
        await chat.send(pasted)
        refusal = await chat.wait_for(lambda m: m.get("isError") and "limit" in (m.get("output") or ""))
        assert "2,097,152 characters" in refusal["output"]
        await asyncio.sleep(1.5)  # Chainlit stores the message and names the thread in the background
        assert (await chat.answer_to("What is 2 + 2?", "2 + 2 = 4"))["name"] == "mathematician"  # still serving
    finally:
        await chat.sio.disconnect()
    db = sqlite3.connect(srv.workdir / "data" / "chorus.db")
    try:
        (name,) = db.execute('SELECT "name" FROM threads WHERE "id" = ?', (chat.thread_id,)).fetchone()
        outputs = [row[0] or "" for row in db.execute(
            'SELECT "output" FROM steps WHERE "threadId" = ? AND "type" = ?', (chat.thread_id, "user_message"))]
    finally:
        db.close()
    assert len(name) <= 200
    kept = next(o for o in outputs if o.startswith("xxxx"))
    assert len(kept) < 3_000 and "2,097,152 characters" in kept and "refused" in kept
