"""Stopping ``chorus run`` in the middle of turns, as a rolling restart (SIGTERM) or a crash
(kill -9) does, against a real litellm provider in another process.

SIGTERM: the server stops accepting at once, stops the running turns so that each one records
what it cost and what was said so far, writes their traces, and exits within 10 s. Either way,
no question is lost and, after a restart on the same data directory, the conversation reopens
and goes on.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chat_client import ChatClient, login_cookie, saved_state
from conftest import ChorusServer
from test_burst_and_shutdown import WORDS, _serious, _server

LAST_WORD = f"w{WORDS - 1}"
INTERRUPTED = "Interrupted: the server stopped before this reply was finished"  # chorus.app.INTERRUPTED_MARK

# The provider of test_burst_and_shutdown, with a pace that the test sets while it runs
# ("pace SECONDS" on its stdin: the wait before each chunk after the first, from then on).
PACED_PROVIDER = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])
    from fake_openai import FakeOpenAI, FakeResponse
    words = [f"w{i} " for i in range(WORDS)]
    with FakeOpenAI(default=FakeResponse(text_chunks=words)) as fake:
        print(fake.url, flush=True)
        for line in sys.stdin:
            fake.default = FakeResponse(text_chunks=words, chunk_delay=float(line.split()[1]))
            print("ok", flush=True)
'''.replace("WORDS", str(WORDS)))


class PacedProvider:
    """An OpenAI-compatible provider in its own process, streaming ``WORDS`` one-word chunks a reply."""

    def __init__(self, tmp: Path) -> None:
        script = tmp / "paced_provider.py"
        script.write_text(PACED_PROVIDER)
        self.proc = subprocess.Popen([sys.executable, str(script), str(Path(__file__).parent)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def pace(self, seconds: float) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"pace {seconds}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


class Reopening(ChatClient):
    """A page reopening a conversation from the history: records the thread Chainlit sends back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resumed: list[dict[str, Any]] = []
        self.sio.on("resume_thread", self.resumed.append)


async def _until(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _query(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # a table not created yet
        return []
    finally:
        db.close()


def _traced_threads(srv: ChorusServer) -> list[str]:
    """The thread of every turn traced in the server's MLflow store (one entry per trace)."""
    return [row[0] for row in _query(srv.workdir / "data" / "mlflow.db",
                                     "SELECT session_id FROM trace_info")]


def _chorus_db(srv: ChorusServer) -> Path:
    return srv.workdir / "data" / "chorus.db"


def _steps(srv: ChorusServer, thread: str, kind: str) -> list[str]:
    return [row[0] or "" for row in _query(_chorus_db(srv), 'SELECT "output" FROM steps WHERE "threadId" = ? '
                                           'AND "type" = ? ORDER BY "createdAt"', thread, kind)]


def _finished(chat: ChatClient) -> Callable[[], bool]:
    """The turn is over: the page got its tokens-and-cost step (sent after the last reply)."""
    return lambda: any(m.get("name") == "tokens and cost" for m in chat.messages)


def _started(tmp: Path, provider: PacedProvider, user: str) -> tuple[ChorusServer, str]:
    srv = _server(tmp, provider.url, CHORUS_TRACING="true")
    srv.workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", user, "--password-stdin"],
                   input=f"{user}-password\n", text=True, env=srv.env, cwd=srv.workdir, check=True, timeout=120)
    srv.start()
    return srv, login_cookie(srv.url, user, f"{user}-password")


async def _first_turn(srv: ChorusServer, cookie: str) -> ChatClient:
    """A conversation with one finished turn (and its trace written): the one a restart reopens."""
    chat = await ChatClient(srv, cookie=cookie).connect()
    await chat.send("first question")
    await _until("the first answer", _finished(chat), timeout=60)  # a first start also sets MLflow up
    await _until("the first turn's trace", lambda: chat.thread_id in _traced_threads(srv))
    return chat


async def _all_streaming(chats: list[ChatClient], words: int = 1) -> None:
    await _until("every reply streaming", lambda: all(len(c.tokens) >= words for c in chats))


async def _reopen_and_continue(srv: ChorusServer, cookie: str, user: str, thread: str) -> None:
    """After the restart, the page reopens the conversation, sees it whole and gets an answer."""
    page = await Reopening(srv, cookie=cookie, thread_id=thread).connect()
    try:
        (resumed,) = await _until("the reopened conversation", lambda: page.resumed)
        shown = [s.get("output") or "" for s in resumed["steps"] if s.get("type") == "user_message"]
        assert shown[:2] == ["first question", "second question"], shown
        await page.send("third question")
        await _until("an answer in the reopened conversation", _finished(page))
        replies = [m.get("output") or "" for m in page.messages if m.get("type") == "assistant_message"]
        assert any(LAST_WORD in r for r in replies), replies
        notes = [m.get("output") or "" for m in page.messages]
        assert not any("no saved memory" in n for n in notes), notes
    finally:
        await page.sio.disconnect()
    # The team that answered remembered the conversation: its saved state has both finished turns.
    deadline = time.monotonic() + 30
    while "third question" not in (state := await saved_state(srv, thread, user)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert "first question" in state and "third question" in state, state[:2000]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_sigterm_mid_turn_keeps_questions_costs_and_traces_exits_promptly_and_the_thread_goes_on(
    tmp_path: Path,
) -> None:
    provider = PacedProvider(tmp_path)
    srv, cookie = _started(tmp_path, provider, "rhea")
    try:
        main = await _first_turn(srv, cookie)
        provider.pace(0.1)  # 5 s a reply from now on: every turn is still running at the signal
        others = [ChatClient(srv, cookie=cookie) for _ in range(9)]
        idle = ChatClient(srv, cookie=cookie)  # a page left open, behind a proxy that passes no websockets:
        idle.transports = ["polling"]  # it always has a request waiting for the server's next message
        await idle.connect()
        await asyncio.gather(*(c.connect() for c in others))
        main.tokens.clear()
        sent = await asyncio.gather(main.send("second question"),
                                    *(c.send(f"question {i}") for i, c in enumerate(others)))
        chats = [main, *others]
        await _all_streaming(chats)
        assert srv.proc is not None
        signalled = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        refused_while_running = False
        while srv.proc.poll() is None and time.monotonic() - signalled < 30:
            if _refused(srv.port):
                refused_while_running = refused_while_running or srv.proc.poll() is None
            await asyncio.sleep(0.05)
        srv.proc.wait(30)
        took = time.monotonic() - signalled
        stopping = srv.output()
        assert took <= 10, f"chorus run took {took:.1f} s to exit after SIGTERM"
        assert srv.proc.returncode in (0, -signal.SIGTERM)
        assert refused_while_running, "a new connection was still accepted while the server was stopping"
        assert _serious(stopping) == [], _serious(stopping)[:10]

        stored = {row[0] for row in _query(_chorus_db(srv), 'SELECT "id" FROM steps WHERE "type" = ?',
                                           "user_message")}
        assert set(sent) <= stored  # every question was kept
        for chat in chats:
            # What each cut-off turn cost is in the ledger (the provider bills what it streamed)...
            calls = _query(_chorus_db(srv), "SELECT completion_tokens FROM chorus_usage WHERE thread_id = ? "
                           "ORDER BY id", chat.thread_id)
            cut_off = calls[2:] if chat is main else calls  # the first turn made two calls
            assert cut_off and cut_off[0][0] > 0, (chat.thread_id, calls)
            # ...and what was said so far is stored, marked as cut short by the server.
            replies = _steps(srv, chat.thread_id, "assistant_message")
            assert any(r.startswith("w0 ") and INTERRUPTED in r for r in replies), replies
        traced = _traced_threads(srv)
        assert all(c.thread_id in traced for c in others), "a cut-off turn's trace did not reach MLflow"
        assert traced.count(main.thread_id) == 2, traced

        provider.pace(0)
        srv.start()  # the same data directory, as after a rolling restart
        await _reopen_and_continue(srv, cookie, "rhea", main.thread_id)
        assert _serious(srv.output()) == [], _serious(srv.output())[:10]
    finally:
        srv.stop()
        provider.stop()


async def test_kill_9_mid_turn_loses_no_question_and_the_thread_goes_on_after_a_restart(tmp_path: Path) -> None:
    provider = PacedProvider(tmp_path)
    srv, cookie = _started(tmp_path, provider, "iris")
    try:
        main = await _first_turn(srv, cookie)
        provider.pace(0.1)
        other = await ChatClient(srv, cookie=cookie).connect()
        main.tokens.clear()
        sent = await asyncio.gather(main.send("second question"), other.send("another question"))
        # Long enough into the replies that the server has stored what they said so far.
        await _all_streaming([main, other], words=25)
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)  # a crash: nothing runs after this
        srv.proc.wait(10)

        stored = {row[0] for row in _query(_chorus_db(srv), 'SELECT "id" FROM steps WHERE "type" = ?',
                                           "user_message")}
        assert set(sent) <= stored  # every question was kept
        partial = [r for r in _steps(srv, main.thread_id, "assistant_message") if INTERRUPTED in r]
        assert partial and partial[0].startswith("w0 w1 "), partial

        provider.pace(0)
        srv.start()  # whatever the crash left half-written (journals, traces) must not stop this
        assert _query(_chorus_db(srv), "PRAGMA integrity_check") == [("ok",)]
        await _reopen_and_continue(srv, cookie, "iris", main.thread_id)
        assert _serious(srv.output()) == [], _serious(srv.output())[:10]
    finally:
        srv.stop()
        provider.stop()
