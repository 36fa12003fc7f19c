"""Streaming under load: N chat sessions at once over Chainlit's socket, Chorus against a baseline.

    python3 -m uv run --group test python bench/load.py [--sessions 1,10,50,200] [--words 50]
                                                        [--workers 1,2]

Each of N socket.io clients speaks the page's protocol (the same path the browser uses): it
connects, waits until every client is connected and its chat has started, then sends one
message. The team is a two-agent round robin on a zero-latency scripted model; each agent
streams ``--words`` word-sized chunks (the model's tokens). For every N the script prints:

- delivered tokens/s: tokens that reached the clients, over the time from the first send to the
  last finished turn;
- first-token p50/p95: from sending the message to the first streamed text of the turn;
- turn p50/p95: from sending to the last agent's finished message;
- lost: tokens the model produced that never reached a client (a turn answered with nothing
  loses all of its tokens); wrong: replies whose streamed or final text differs from what the
  model produced;
- events/turn: socket events that carried tokens, per turn.

Chorus runs as ``chorus run`` (offline defaults: SQLite, local Chroma, MLflow tracing on); the
baseline is ``bench/baseline/app.py``, AutoGen in Chainlit the way AutoGen's docs show, on the
same kind of model. Both run in this same invocation, so the ratio is measured in one run.
``--workers 2`` also runs Chorus as two workers behind Debian's nginx (``deploy/nginx-chorus.conf``)
on a fresh PostgreSQL database, when nginx and PostgreSQL are there.

A last probe sends 20 messages one after another in one session and reports how long the
model's first chunk takes to reach the client (the server records when the scripted model
answers; both clocks are this machine's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import socketio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from workers import NginxProxy, create_database, drop_database, free_port, nginx_binary  # noqa: E402

AGENTS = ("assistant", "guide")


def reply_text(words: int) -> str:
    vocabulary = ("streaming tokens reach every open chat quickly while the team keeps answering "
                  "questions about music plugins memory traces and costs").split()
    return " ".join(vocabulary[i % len(vocabulary)] + ("." if i % 12 == 11 else "") for i in range(words))


@dataclass
class Server:
    """A server process (Chorus or the baseline) on a free port."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> Server:
        log = (self.cwd / f"{self.name}-{self.port}.log").open("wb")
        self.proc = subprocess.Popen([*self.argv, "--port", str(self.port)], cwd=self.cwd, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(self.url, timeout, self.proc)
        return self

    def settle(self, timeout: float = 120) -> None:
        """Wait until start-up work in the background (migrations, model loading) is over: the
        process tree uses under 5% of a CPU for a second."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last = cpu_seconds(self.proc.pid)
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = cpu_seconds(self.proc.pid)
            if now - last < 0.05:
                return
            last = now

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """CPU time used by process ``pid`` and its children (Linux)."""
    total = 0.0
    for proc in [str(pid), *Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/project/settings", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@dataclass
class Turn:
    """What one client saw of its turn."""

    sent: float = 0.0
    first_token: float | None = None
    done: float | None = None
    events: int = 0  # socket events carrying streamed text
    streamed: dict[str, list[str]] = field(default_factory=dict)  # message id -> tokens
    final: dict[str, str] = field(default_factory=dict)  # message id -> finished text
    authors: dict[str, str] = field(default_factory=dict)
    refused: str | None = None


class Client:
    """One chat session over Chainlit's socket.io protocol."""

    def __init__(self, url: str, profile: str | None) -> None:
        self.url = url
        self.profile = profile
        self.session_id = str(uuid.uuid4())
        self.sio = socketio.AsyncClient(reconnection=False)
        self.turn = Turn()
        self.finished = asyncio.Event()
        self.sio.on("stream_start", self._on_stream_start)
        self.sio.on("new_message", self._on_message)
        self.sio.on("update_message", self._on_message)
        self.sio.on("stream_token", self._on_token)

    def _on_stream_start(self, data: dict[str, Any]) -> None:
        """A streamed reply begins: Chainlit sends its first text with the message itself."""
        self._streamed(data["id"], data.get("output") or "")

    def _on_token(self, data: dict[str, Any]) -> None:
        self._streamed(data["id"], data.get("token") or "")

    def _streamed(self, message_id: str, text: str) -> None:
        turn = self.turn
        if turn.first_token is None and text:
            turn.first_token = time.perf_counter()
        turn.events += 1
        turn.streamed.setdefault(message_id, []).append(text)

    def _on_message(self, data: dict[str, Any]) -> None:
        """A finished message: an agent's reply, or a refusal from the app."""
        author = data.get("name") or ""
        output = data.get("output") or ""
        turn = self.turn
        if author in AGENTS and output:
            turn.final[data["id"]] = output
            if turn.first_token is None:  # not streamed at all
                turn.first_token = time.perf_counter()
            if len(turn.final) >= len(AGENTS) and turn.done is None:
                turn.done = time.perf_counter()
                self.finished.set()
        elif data.get("type") != "user_message" and output and author not in AGENTS:
            turn.refused = output

    async def connect(self, cookie: str | None = None) -> None:
        auth = {"clientType": "webapp", "sessionId": self.session_id, "threadId": str(uuid.uuid4())}
        if self.profile:
            auth["chatProfile"] = self.profile
        headers = {"Cookie": f"X-Chainlit-Session-id={self.session_id}" + (f"; {cookie}" if cookie else "")}
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"], auth=auth,
                               headers=headers, wait_timeout=60)
        await self.sio.emit("connection_successful")

    async def send(self, text: str) -> None:
        self.turn = Turn(sent=time.perf_counter())
        self.finished.clear()
        step = {"id": str(uuid.uuid4()), "name": "User", "type": "user_message", "output": text,
                "createdAt": datetime.now(UTC).isoformat()}
        await self.sio.emit("client_message", {"message": step, "fileReferences": []})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


@dataclass
class Result:
    sessions: int
    tokens_per_s: float
    first_p50: float
    first_p95: float
    turn_p50: float
    turn_p95: float
    lost: int
    wrong: int
    events_per_turn: float
    unanswered: int


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def run_load(url: str, sessions: int, reply: str, profile: str | None, timeout: float,
                   before_send: Any = None) -> Result:
    expected_tokens = len(re.findall(r"\S+\s*", reply))
    clients = [Client(url, profile) for _ in range(sessions)]
    # Connect in small waves: a real page load is spread out too, and it is not what is measured.
    for start in range(0, sessions, 20):
        await asyncio.gather(*(c.connect() for c in clients[start:start + 20]))
    await asyncio.sleep(1.0 + sessions * 0.01)  # every chat has started (on_chat_start has run)
    if before_send is not None:  # a profiler, say
        before_send()
    began = time.perf_counter()
    await asyncio.gather(*(c.send("Tell me about streaming.") for c in clients))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.finished.wait() for c in clients)), timeout)
    ended = max((c.turn.done for c in clients if c.turn.done), default=time.perf_counter())
    await asyncio.gather(*(c.close() for c in clients))
    delivered = lost = wrong = events = unanswered = 0
    firsts, turns = [], []
    for c in clients:
        t = c.turn
        events += t.events
        if t.first_token is not None:
            firsts.append(t.first_token - t.sent)
        if t.done is not None:
            turns.append(t.done - t.sent)
        else:
            unanswered += 1
        got = 0
        for mid, text in t.final.items():
            got += min(expected_tokens, len(re.findall(r"\S+\s*", text)))
            streamed = "".join(t.streamed.get(mid, []))
            if text != reply or (streamed and streamed != reply):
                wrong += 1
        delivered += got
        lost += expected_tokens * len(AGENTS) - got
    return Result(sessions, delivered / max(ended - began, 1e-9), pct(firsts, 0.5), pct(firsts, 0.95),
                  pct(turns, 0.5), pct(turns, 0.95), lost, wrong, events / max(sessions, 1), unanswered)


async def warm_up(server: Server, reply: str, profile: str | None) -> None:
    """A few turns first (imports, caches), then wait for the server to go quiet."""
    await run_load(server.url, 4, reply, profile, 60)
    await asyncio.to_thread(server.settle)


async def chunk_to_socket(url: str, profile: str | None, chunk_log: Path, turns: int = 20) -> list[float]:
    """Per turn: from the scripted model's answer (server clock) to the first token at the client."""
    client = Client(url, profile)
    await client.connect()
    await asyncio.sleep(1.0)
    delays = []
    try:
        for _ in range(turns):
            chunk_log.write_text("")
            await client.send("Tell me about streaming.")
            await asyncio.wait_for(client.finished.wait(), 30)
            lines = chunk_log.read_text().split()
            if client.turn.first_token is None or not lines:
                continue
            # perf_counter and time.time differ by a constant: measure the receive time in time.time.
            received_wall = time.time() - (time.perf_counter() - client.turn.first_token)
            delays.append(received_wall - float(lines[0]))
    finally:
        await client.close()
    return delays


TIMED_CHORUS = """\
import os, sys, time
from chorus.models.scripted import scripted_model
from chorus.cli import app

_reply = scripted_model.reply
_log = os.environ["BENCH_CHUNK_LOG"]

async def _timed(request):
    answer = await _reply(request)
    with open(_log, "a") as out:  # the first chunk is yielded right after this returns
        out.write(f"{time.time():.6f}\\n")
    return answer

scripted_model.reply = _timed
sys.argv = ["chorus", "run", *sys.argv[1:]]
app()
"""


def chorus_env(home: Path, reply: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "CHORUS_HOME": str(home), "CHORUS_MODEL": "scripted", "CHORUS_SCRIPTED_REPLY": reply,
            "CHORUS_AGENTS_DIR": str(ROOT / "agents"), "CHORUS_KNOWLEDGE_DIR": str(ROOT / "knowledge"),
            "CHORUS_FORBID_REAL_MODELS": "1", **(extra or {})}


def print_table(rows: list[tuple[str, Result]]) -> None:
    print(f"{'server':<22}{'N':>5}{'tok/s':>9}{'first p50':>11}{'first p95':>11}{'turn p50':>10}{'turn p95':>10}"
          f"{'lost':>7}{'wrong':>7}{'events/turn':>13}{'unanswered':>12}")
    for name, r in rows:
        print(f"{name:<22}{r.sessions:>5}{r.tokens_per_s:>9,.0f}{r.first_p50 * 1000:>9.0f}ms"
              f"{r.first_p95 * 1000:>9.0f}ms{r.turn_p50:>9.2f}s{r.turn_p95:>9.2f}s{r.lost:>7}{r.wrong:>7}"
              f"{r.events_per_turn:>13.1f}"
              f"{r.unanswered:>12}")
    sys.stdout.flush()


async def measure(url: str, name: str, counts: list[int], reply: str, profile: str | None,
                  rows: list[tuple[str, Result]], timeout: float) -> dict[int, Result]:
    results = {}
    for n in counts:
        result = await run_load(url, n, reply, profile, timeout)
        results[n] = result
        rows.append((name, result))
        print_table([(name, result)])
    return results


@contextlib.asynccontextmanager
async def two_workers(work: Path, reply: str) -> Any:
    """Two Chorus workers on a fresh PostgreSQL database behind nginx (the URL to use), as the
    two-worker test runs them; None, with the reason printed, when nginx or PostgreSQL is absent."""
    if nginx_binary() is None:
        print("(2 workers: skipped, nginx is not installed: apt-get install nginx-light)")
        yield None
        return
    try:
        url = create_database()
    except Exception as exc:
        print(f"(2 workers: skipped, PostgreSQL is not reachable: {exc})")
        yield None
        return
    workers: list[Server] = []
    proxy = None
    try:
        for i in range(2):
            env = chorus_env(work / f"worker{i}", reply, {"CHORUS_DATABASE_URL": url})
            workers.append(Server(f"worker{i}", [sys.executable, "-m", "chorus.cli", "run"], env, work).start())
        for worker in workers:
            await warm_up(worker, reply, "Panel")
        proxy = NginxProxy(work / "nginx", [w.port for w in workers]).start()
        yield proxy.url
    finally:
        if proxy is not None:
            proxy.terminate()
        for worker in workers:
            worker.stop()
        drop_database(url)


async def send_at_once(url: str, sessions: int, reply: str, profile: str | None) -> tuple[int, int]:
    """Sessions that send their message the moment the socket is up, while the chat is still
    starting: how many got (their answer, a clear refusal); the rest got nothing."""
    clients = [Client(url, profile) for _ in range(sessions)]

    async def one(client: Client) -> None:
        await client.connect()
        await client.send("Tell me about streaming.")

    await asyncio.gather(*(one(c) for c in clients))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.finished.wait() for c in clients)), 30)
    answered = sum(1 for c in clients if c.turn.done is not None)
    refused = sum(1 for c in clients if c.turn.done is None and c.turn.refused)
    await asyncio.gather(*(c.close() for c in clients))
    return answered, refused


async def main_async(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.sessions.split(",")]
    reply = reply_text(args.words)
    print(f"{len(AGENTS)} agents x {len(re.findall(chr(92) + 'S+', reply))} tokens per turn; sessions: {counts}; "
          f"{os.cpu_count()} CPUs")
    rows: list[tuple[str, Result]] = []
    with tempfile.TemporaryDirectory(prefix="chorus-load-") as tmp:
        work = Path(tmp)
        chunk_log = work / "chunks.log"
        (work / "timed_chorus.py").write_text(TIMED_CHORUS)
        chorus = Server("chorus", [sys.executable, str(work / "timed_chorus.py")],
                        chorus_env(work / "chorus", reply, {"BENCH_CHUNK_LOG": str(chunk_log)}), work)
        baseline = Server("baseline", [sys.executable, "-m", "chainlit", "run", str(ROOT / "bench/baseline/app.py"),
                                       "--headless"], {**os.environ, "CHORUS_SCRIPTED_REPLY": reply}, work)
        try:
            chorus.start()
            await warm_up(chorus, reply, "Panel")
            ours = await measure(chorus.url, "chorus", counts, reply, "Panel", rows, args.timeout)
            delays = await chunk_to_socket(chorus.url, "Panel", chunk_log)
            early = {"chorus": await send_at_once(chorus.url, 20, reply, "Panel")}
        finally:
            chorus.stop()
        try:
            baseline.start()
            await warm_up(baseline, reply, None)
            theirs = await measure(baseline.url, "baseline (AutoGen doc)", counts, reply, None, rows, args.timeout)
            early["baseline"] = await send_at_once(baseline.url, 20, reply, None)
        finally:
            baseline.stop()
        workers_rows: dict[int, Result] = {}
        if 2 in [int(w) for w in args.workers.split(",")]:
            async with two_workers(work, reply) as url:
                if url is not None:
                    workers_rows = await measure(url, "chorus, 2 workers", counts, reply, "Panel", rows,
                                                 args.timeout)
    print("\nAll in one run:")
    print_table(rows)
    print()
    for n in counts:
        ratio = ours[n].tokens_per_s / theirs[n].tokens_per_s if theirs[n].tokens_per_s else float("inf")
        line = f"N={n:<4} chorus/baseline tokens/s: {ratio:.1f}x"
        if n in workers_rows:
            line += f"; 2 workers/1 worker: {workers_rows[n].tokens_per_s / ours[n].tokens_per_s:.2f}x"
        print(line)
    for name, (answered, refused) in early.items():
        print(f"{name}: 20 sessions sending while their chat starts: {answered} answered, {refused} told why "
              f"not (refusal or error), {20 - answered - refused} got nothing")
    if delays:
        print(f"model's first chunk to the client, one session, {len(delays)} turns: "
              f"p50 {statistics.median(delays) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="1,10,50,200", help="comma-separated session counts")
    parser.add_argument("--words", type=int, default=50, help="tokens each agent streams per turn")
    parser.add_argument("--workers", default="1,2", help="'1' or '1,2' (two workers need nginx and PostgreSQL)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for a round's turns")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
