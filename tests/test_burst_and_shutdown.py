"""The users' path under stress: a real litellm model string against an OpenAI-compatible
provider in another process, with every chat connecting at once (a reconnect storm). SIGTERM and
kill -9 in the middle of turns are in test_shutdown.py, which shares these helpers."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

from chat_client import ChatClient
from conftest import ROOT, ChorusServer

sys.path.insert(0, str(ROOT / "bench"))
from provider import reply_text  # the benchmark's provider and its reply

WORDS = 50  # one-word chunks per reply, like the provider
def _server(tmp: Path, provider_url: str, **env: str) -> ChorusServer:
    """``chorus run`` on a two-agent round robin (``duo``) over the provider at ``provider_url``."""
    agents = tmp / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "duo.yaml").write_text("name: duo\ntype: round_robin\nmembers: [assistant, guide]\ndefault: true\n"
                                     "termination:\n  max_messages: 3\n")
    return ChorusServer(tmp / "server", env={
        "CHORUS_MEMORY": "false", "CHORUS_AGENTS_DIR": str(agents), "CHORUS_MODEL": "openai/fake-model",
        "CHORUS_MODEL_API_BASE": provider_url, "CHORUS_MODEL_API_KEY": "sk-test", **env})


def _serious(log: str) -> list[str]:
    """Log lines above WARNING (Chainlit's own translation warning is not ours)."""
    return [line for line in log.splitlines()
            if line.startswith(("ERROR", "CRITICAL", "Traceback")) or "RecursionError" in line]


class BurstProvider:
    """``bench/provider.py`` in a process of its own: the benchmark's OpenAI-compatible provider on
    bare asyncio, which serves hundreds of streams at once (the threaded fake's listen queue of
    five would drop a burst's connections before Chorus saw them)."""

    def __init__(self, words: int) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "provider.py"), "--words", str(words)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


class Chat(ChatClient):
    """A chat that knows when both agents of the duo have finished their replies."""

    def __init__(self, server: ChorusServer) -> None:
        super().__init__(server)
        self.chat_profile = "Duo"  # as the page sends it: the team's title
        self.answered = asyncio.Event()
        self.replies: dict[str, str] = {}  # author -> finished text

    async def _on_message(self, data: dict[str, Any]) -> None:
        await super()._on_message(data)
        if data.get("type") == "assistant_message" and data.get("name") in ("assistant", "guide") \
                and not data.get("streaming") and data.get("output"):
            self.replies[data["name"]] = data["output"]
            if len(self.replies) == 2:
                self.answered.set()


async def test_500_chats_connecting_in_the_same_instant_all_connect_and_are_answered(tmp_path: Path) -> None:
    """A reconnect storm after a restart: every page connects at once, then every user asks at once.
    Chainlit built each socket's session in a nested event loop, so a burst of connections overflowed
    the stack (RecursionError) and most chats were never answered."""
    words = 20
    provider = BurstProvider(words)
    srv = _server(tmp_path, provider.url)
    srv.env["CHORUS_MEMORY"] = "false"
    srv.start(timeout=120)
    chats = [Chat(srv) for _ in range(500)]
    try:
        connected = await asyncio.gather(*(c.connect() for c in chats), return_exceptions=True)
        failed = [repr(r) for r in connected if isinstance(r, BaseException)]
        assert not failed, f"{len(failed)} of 500 could not connect: {failed[:3]}"
        await asyncio.gather(*(c.send(f"question {i}") for i, c in enumerate(chats)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.answered.wait() for c in chats)), 300)
    finally:
        await asyncio.gather(*(c.sio.disconnect() for c in chats), return_exceptions=True)
        srv.stop()
        provider.stop()
    unanswered = [c for c in chats if not c.answered.is_set()]
    assert not unanswered, f"{len(unanswered)} of 500 chats were not answered by both agents"
    expected = reply_text(words)
    wrong = [c.replies for c in chats if set(c.replies.values()) != {expected}]
    assert not wrong, f"{len(wrong)} chats got other text than the provider sent: {wrong[:2]}"
    assert _serious(srv.output()) == [], _serious(srv.output())[:10]
