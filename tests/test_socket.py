"""Chainlit's socket (the path the browser uses): streaming, queued messages, and bad input that gets clear errors."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import socketio
from chat_client import ChatClient, login_cookie
from conftest import ChorusServer


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


def _final(client: ChatClient, author: str, needle: str) -> Any:
    """A predicate: ``author``'s finished reply containing ``needle`` (not a stream in progress)."""
    return lambda m: (m.get("name") == author and m.get("streaming") is False and needle in (m.get("output") or "")
                      and m.get("id") not in client.deleted)


async def test_replies_stream_live_in_batches_and_end_as_the_models_text(server: ChorusServer) -> None:
    """Streamed text is sent in small batches (not one socket event per token), still looks live,
    and adds up to exactly the reply the model produced."""
    from chorus.models.local import split_tokens

    client = await ChatClient(server).connect()
    try:
        await client.send("How do I use a real model?")
        final = await client.wait_for(_final(client, "guide", "CHORUS_MODEL"), timeout=60)
        pieces = [(at, text) for at, message_id, text in client.streamed if message_id == final["id"]]
        assert "".join(text for _, text in pieces) == final["output"]
        tokens = len(split_tokens(final["output"]))
        assert tokens > 30
        assert 1 < len(pieces) < 0.75 * tokens  # live, and batched (the model streams at 50 tokens/s here)
        gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(pieces)]
        assert max(gaps) < 0.5, gaps  # no stall while tokens flow (40 ms batches; slack for a loaded CI)
    finally:
        await client.sio.disconnect()


async def test_a_message_sent_while_the_chat_starts_or_the_team_answers_is_queued(server: ChorusServer) -> None:
    client = ChatClient(server)
    await client.connect()
    try:
        # At once, while on_chat_start may still be running: answered, not dropped.
        await client.send("What time is it in Tokyo?")
        await client.wait_for(_final(client, "assistant", "Asia/Tokyo"), timeout=60)
        earlier = len(client.messages)  # (that first one may have shown "Queued" too, on a loaded machine)

        await client.send("How do I use a real model?")
        await client.wait_for(lambda m: m.get("name") == "guide")  # its long reply is streaming
        await client.send("What is 2 + 2?")
        await client.send("What time is it in Paris?")
        paris = await client.wait_for(_final(client, "assistant", "Europe/Paris"), timeout=60)
        math = next(m for m in client.messages if _final(client, "mathematician", "2 + 2 = 4")(m))
        guide = next(m for m in client.messages if _final(client, "guide", "CHORUS_MODEL")(m))
        # Answered in the order they were sent, each after the one before it ended.
        assert client.messages.index(guide) < client.messages.index(math) < client.messages.index(paris)
        queued = [m for m in client.messages[earlier:] if (m.get("output") or "").startswith("⏳ Queued")]
        # Shown while waiting (the two sent behind the guide's reply; on a loaded machine the guide's own
        # question can wait a moment for the first turn to wind down, and say so too).
        assert len(queued) >= 2 and all(m["id"] in client.deleted for m in queued)

        # The stop button stops the running reply and every message waiting behind it, and says so.
        client.messages.clear()
        await client.send("How do I use a real model?")
        await client.wait_for(lambda m: m.get("name") == "guide")
        await client.send("What is 3 + 3?")
        await client.send("What is 5 + 5?")
        for _ in range(100):  # both wait under their note
            if len([m for m in client.messages if (m.get("output") or "").startswith("⏳ Queued")]) == 2:
                break
            await asyncio.sleep(0.05)
        await client.sio.emit("stop")
        for _ in range(200):
            stopped = [m for m in client.messages if "Stopped before the team got to" in (m.get("output") or "")]
            if len({m["id"] for m in stopped}) == 2:
                break
            await asyncio.sleep(0.05)
        assert len({m["id"] for m in stopped}) == 2
        await client.send("What is 4 + 4?")
        await client.wait_for(_final(client, "mathematician", "4 + 4 = 8"), timeout=60)
        outputs = " ".join(m.get("output") or "" for m in client.messages)
        assert "3 + 3 = 6" not in outputs and "5 + 5 = 10" not in outputs  # stopped means not answered later
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
        alice = await ChatClient(srv, cookie=login_cookie(srv.url, "alice", "alice-password")).connect()
        await alice.answer_to("What time is it in Tokyo?", "Asia/Tokyo")
        await asyncio.sleep(1.0)  # the thread and its steps are written
        await alice.sio.disconnect()

        bob_cookie = login_cookie(srv.url, "bob", "bob-password")
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
