"""The users' path under stress: a real litellm model string against an OpenAI-compatible
provider in another process, and SIGTERM in the middle of running turns (a rolling restart)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from chat_client import ChatClient
from conftest import ChorusServer

WORDS = 50  # one-word chunks per reply, like the provider
PROVIDER = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from fake_openai import FakeOpenAI, FakeResponse
    words = [f"w{i} " for i in range(WORDS)]
    with FakeOpenAI(default=FakeResponse(text_chunks=words, chunk_delay=float(sys.argv[1]))) as fake:
        print(fake.url, flush=True)
        time.sleep(3600)
'''.replace("WORDS", str(WORDS)))


class Provider:
    """An OpenAI-compatible provider in a process of its own, streaming ``WORDS`` chunks a reply."""

    def __init__(self, tmp: Path, chunk_delay: float) -> None:
        script = tmp / "provider.py"
        script.write_text(PROVIDER)
        self.proc = subprocess.Popen([sys.executable, str(script), str(chunk_delay), str(Path(__file__).parent)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def _server(tmp: Path, provider: Provider, **env: str) -> ChorusServer:
    agents = tmp / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "duo.yaml").write_text("name: duo\ntype: round_robin\nmembers: [assistant, guide]\ndefault: true\n"
                                     "termination:\n  max_messages: 3\n")
    return ChorusServer(tmp / "server", env={
        "CHORUS_MEMORY": "false", "CHORUS_AGENTS_DIR": str(agents), "CHORUS_MODEL": "openai/fake-model",
        "CHORUS_MODEL_API_BASE": provider.url, "CHORUS_MODEL_API_KEY": "sk-test", **env})


def _serious(log: str) -> list[str]:
    """Log lines above WARNING (Chainlit's own translation warning is not ours)."""
    return [line for line in log.splitlines()
            if line.startswith(("ERROR", "CRITICAL", "Traceback")) or "RecursionError" in line]


async def test_sigterm_in_the_middle_of_turns_exits_promptly_and_keeps_the_messages(tmp_path: Path) -> None:
    paced = Provider(tmp_path, 0.1)  # 5 s a reply: every turn is still running at the signal
    srv = _server(tmp_path, paced)
    srv.workdir.mkdir(parents=True, exist_ok=True)
    added = subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", "rhea", "--password-stdin"],
                           input="rhea-password\n", text=True, env=srv.env, cwd=srv.workdir, timeout=120)
    assert added.returncode == 0
    srv.start()
    try:
        from chat_client import login_cookie

        cookie = login_cookie(srv.url, "rhea", "rhea-password")
        clients = [ChatClient(srv, cookie=cookie) for _ in range(10)]
        await asyncio.gather(*(c.connect() for c in clients))
        sent = await asyncio.gather(*(c.send(f"question {i}") for i, c in enumerate(clients)))
        for _ in range(300):  # until every reply is streaming
            if all(c.tokens for c in clients):
                break
            await asyncio.sleep(0.05)
        assert all(c.tokens for c in clients), "not every reply started streaming"
        assert srv.proc is not None
        signalled = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(30)
        took = time.monotonic() - signalled
    finally:
        srv.stop()
        paced.stop()
    assert took <= 10, f"chorus run took {took:.1f} s to exit after SIGTERM"
    assert srv.proc is not None and srv.proc.returncode in (0, -signal.SIGTERM)
    db = sqlite3.connect(srv.workdir / "data" / "chorus.db")
    try:
        stored = {row[0] for row in db.execute('SELECT "id" FROM steps WHERE "type" = ?', ("user_message",))}
    finally:
        db.close()
    assert set(sent) <= stored  # every question was kept
    assert _serious(srv.output()) == [], _serious(srv.output())[:10]
