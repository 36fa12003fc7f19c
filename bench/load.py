"""Streaming under load on the users' path: Chorus against AutoGen's documented Chainlit pattern.

    python3 -m uv run --locked --group test --group bench python bench/load.py
        [--waves 10,50,200] [--waves-paced 200] [--at-once 50,200,500] [--at-once-paced ""]
        [--pace 50] [--words 50] [--workers 1,2] [--compare-with GITREF] [--model http|scripted]
        [--profile DIR]

What runs. ``bench/provider.py``, an OpenAI-compatible chat-completions server in a process of
its own, streams the same reply of ``--words`` words to every request, one word per
server-sent-event chunk (so words = chunks = tokens here), either as fast as the socket takes
them ("instant") or paced at ``--pace`` chunks per second per stream, like a real provider's
decoding. Against it, in their own processes, on 127.0.0.1:

- **Chorus**: this checkout's code (its working tree, uncommitted changes included) as
  ``chorus run`` with ``CHORUS_MODEL=openai/bench``, ``CHORUS_MODEL_API_BASE`` = the
  provider, ``CHORUS_MODEL_API_KEY=sk-bench``, ``CHORUS_FORBID_REAL_MODELS=1``, and every other
  setting at its default (SQLite, Chroma memory and knowledge, MLflow tracing). Each chat picks
  the ``Panel`` profile (``agents/panel.yaml``): a two-agent round robin, the assistant then
  the guide, one reply each.
- **baseline**: ``bench/baseline/app.py``, AutoGen's Chainlit sample (``app_team.py``) with
  AutoGen's own ``OpenAIChatCompletionClient`` (``autogen-ext[openai]``) on the same provider,
  the same two agents and the same termination.
- ``--compare-with GITREF``: also Chorus as it was at GITREF, from a temporary detached
  ``git worktree`` of this repository (removed afterwards; nothing else in the repository is
  touched), measured in the same run. Its code runs on this checkout's environment with the
  worktree first on ``PYTHONPATH`` when every package GITREF locks is locked here at the same
  version, else on an environment of its own made by ``uv sync --locked`` (``--compare-venv``).
- ``--workers 1,2``: also two Chorus workers behind Debian's nginx (``deploy/nginx-chorus.conf``)
  on a fresh PostgreSQL database, on the rounds whose chats connect in waves, when nginx and
  PostgreSQL are there.

Every server is started and warmed up first (4 chats); then each round runs on each server in
turn, after the server has gone quiet.
A round is N socket.io clients speaking the page's protocol (the browser's path). They connect
either **in waves** of 20 (then wait until every chat has started) or **all at once** (every
connect gathered in the same instant, then every message sent in the same instant: a reconnect
storm after a restart); each sends one message, which the two agents answer. Per round:

- words/s: words that reached the clients, over the time from the first send to the last
  finished turn; with the paced provider also what the provider offers (each chat has one
  stream open at a time: chats x pace words/s) and the share of it delivered;
- first token and turn p50/p95: from sending the message to the first streamed text, and to
  the last agent's finished message;
- lost: words the provider streamed that never reached a client (an unanswered chat loses all
  of its words); wrong: replies whose streamed or final text differs from the provider's;
- connected, answered, unanswered: chats whose socket connected, chats that got both replies,
  and the rest;
- server CPU per word: CPU seconds of the server's process tree (``/proc``) from the first
  send (for at-once rounds: from the first connect) until the server is quiet again after the
  round (deferred work such as trace export and memory writes included), over words delivered;
  in brackets, the part of it spent after the last turn ended;
- log: lines above WARNING (ERROR, CRITICAL, Traceback) that the server wrote during the round;
- beyond provider: per chat, the time from the provider writing the chat's first chunk to its
  socket (``bench/provider.py`` records it with ``time.time()``) to the client seeing the first
  token (``time.time()`` too; one machine, one clock): the latency the server itself adds.

The detail table has a line per round and server as it is measured; the run ends with the
server logs' first lines above WARNING for each round that had any, and the summary:
``| chats | connect | provider pace | <server> words/s ... | × | first token p50 ... |``, with
the at-once rounds' connected / answered / log-line counts per server.

``--model scripted`` measures the old way instead: Chorus on its in-process scripted model and
the baseline on ``ZeroLatencyClient`` (``bench/baseline/zero_latency.py``), no HTTP, no provider;
those figures are labelled "scripted model (in process, no HTTP)", and a last probe times the
scripted model's first chunk to the client over 20 turns of one chat.

``--profile DIR`` records each server during each round with py-spy (the ``bench`` dependency
group) into speedscope files; py-spy's own CPU then skews the figures.

The figures are one run on whatever machine runs it; the same run measures every server, so
the ratios are like for like, but on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import socketio

ENV = dict(os.environ)  # before anything imported here changes it (Chorus fills in offline switches)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from provider import reply_text  # noqa: E402
from workers import NginxProxy, create_database, drop_database, free_port, nginx_binary  # noqa: E402

AGENTS = ("assistant", "guide")
WAVE = 20
SCRIPTED_LABEL = "scripted model (in process, no HTTP)"
SERIOUS = re.compile(r"^(ERROR|CRITICAL|Traceback)\b|\s-\s(ERROR|CRITICAL)\s-\s|RecursionError")


def tokens(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


def cpu_seconds(pid: int) -> float:
    """CPU time used by process ``pid`` and all its descendants (Linux)."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        proc = todo.pop()
        if proc in seen:
            continue
        seen.add(proc)
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{proc}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
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
class Server:
    """A server process (Chorus or the baseline) on a free port, in a working directory of its own."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.cwd / "server.log"

    def start(self, timeout: float = 180) -> Server:
        self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([*self.argv, "--port", str(self.port)], cwd=self.cwd, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(self.url, timeout, self.proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: {exc}\n{self.log.read_text(errors='replace')[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@dataclass
class Target:
    """What one column of the table measures: a URL and the processes behind it."""

    name: str
    url: str
    profile: str | None
    servers: list[Server]
    rounds: str = "all"  # "waves": only the rounds whose chats connect in waves

    def cpu(self) -> float:
        return sum(cpu_seconds(s.proc.pid) for s in self.servers if s.proc is not None)

    def log_sizes(self) -> list[int]:
        return [s.log.stat().st_size for s in self.servers]

    def serious_since(self, sizes: list[int]) -> list[str]:
        """Lines above WARNING written to the servers' logs since ``sizes``."""
        lines = []
        for server, size in zip(self.servers, sizes, strict=True):
            with server.log.open("rb") as log:
                log.seek(size)
                lines += [line for line in log.read().decode(errors="replace").splitlines() if SERIOUS.search(line)]
        return lines

    def settle(self, timeout: float = 60) -> None:
        """Wait until the servers are quiet (start-up or a round's deferred work is over): under 5%
        of a CPU for a second."""
        deadline = time.monotonic() + timeout
        last = self.cpu()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.cpu()
            if now - last < 0.05:
                return
            last = now


class ProviderProcess:
    """``bench/provider.py`` in a process of its own."""

    def __init__(self, words: int, pace: float) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "provider.py"), "--words", str(words),
                                      "--pace", str(pace)], stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"bench/provider.py did not start: {self.url!r}")

    def configure(self, pace: float) -> None:
        """Set the pace for the next round and reset the provider's counts."""
        httpx.post(self.url + "/bench", json={"pace": pace}, timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/stats", timeout=30).json())

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@dataclass
class Turn:
    """What one client saw of its turn."""

    sent: float = 0.0
    first_token: float | None = None
    first_token_wall: float | None = None  # time.time(), to compare with the provider's clock
    done: float | None = None
    events: int = 0  # socket events carrying streamed text
    streamed: dict[str, list[str]] = field(default_factory=dict)  # message id -> tokens
    final: dict[str, str] = field(default_factory=dict)  # message id -> finished text
    refused: str | None = None


class Client:
    """One chat session over Chainlit's socket.io protocol."""

    def __init__(self, url: str, profile: str | None) -> None:
        self.url = url
        self.profile = profile
        self.session_id = str(uuid.uuid4())
        self.marker = uuid.uuid4().hex[:12]  # in the message, so the provider can tell the chats apart
        self.sio = socketio.AsyncClient(reconnection=False)
        self.connected = False
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

    def _first(self) -> None:
        if self.turn.first_token is None:
            self.turn.first_token = time.perf_counter()
            self.turn.first_token_wall = time.time()

    def _streamed(self, message_id: str, text: str) -> None:
        if text:
            self._first()
        self.turn.events += 1
        self.turn.streamed.setdefault(message_id, []).append(text)

    def _on_message(self, data: dict[str, Any]) -> None:
        """A finished message: an agent's reply, or a notice or refusal from the app."""
        author = data.get("name") or ""
        output = data.get("output") or ""
        turn = self.turn
        if author in AGENTS and output:
            turn.final[data["id"]] = output
            self._first()  # a reply that was not streamed at all
            if len(turn.final) >= len(AGENTS) and turn.done is None:
                turn.done = time.perf_counter()
                self.finished.set()
        elif data.get("type") != "user_message" and output and author not in AGENTS:
            turn.refused = output

    async def connect(self) -> None:
        auth = {"clientType": "webapp", "sessionId": self.session_id, "threadId": str(uuid.uuid4())}
        if self.profile:
            auth["chatProfile"] = self.profile
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"], auth=auth,
                               headers={"Cookie": f"X-Chainlit-Session-id={self.session_id}"}, wait_timeout=60)
        await self.sio.emit("connection_successful")
        self.connected = True

    async def send(self, text: str = "Tell me about streaming.") -> None:
        self.turn = Turn(sent=time.perf_counter())
        self.finished.clear()
        step = {"id": str(uuid.uuid4()), "name": "User", "type": "user_message",
                "output": f"{text} [chat {self.marker}]", "createdAt": datetime.now(UTC).isoformat()}
        await self.sio.emit("client_message", {"message": step, "fileReferences": []})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


@dataclass(frozen=True)
class Round:
    chats: int
    at_once: bool
    pace: float  # provider chunks/s per stream; 0 = instant
    scripted: bool = False  # no provider: the scripted model in process

    @property
    def connect(self) -> str:
        return "at once" if self.at_once else f"waves of {WAVE}"

    @property
    def pace_label(self) -> str:
        if self.scripted:
            return "none (scripted)"
        return f"{self.pace:g}/s" if self.pace else "instant"


@dataclass
class Result:
    target: str
    round: Round
    connected: int
    answered: int
    words_per_s: float
    offered: float | None  # words/s the paced provider offers
    first_p50: float
    first_p95: float
    turn_p50: float
    turn_p95: float
    lost: int
    wrong: int
    cpu_ms_per_word: float  # from the first send (at once: connect) until the server is quiet again
    cpu_ms_per_word_after: float  # the part of it after the last turn ended (closing chats, deferred work)
    serious: list[str]
    beyond_p50: float | None
    events_per_turn: float
    completions: int | None
    provider_cpu: float | None
    seconds: float  # the whole round, connections and the quiet server after it included

    @property
    def unanswered(self) -> int:
        return self.round.chats - self.answered


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def wait_finished(clients: list[Client], timeout: float, stall: float) -> None:
    """Until every connected client's turn is done, nothing has streamed for ``stall`` seconds
    (plus 0.05 s a chat: a burst's chats all start before the first token), or ``timeout`` has
    passed."""
    deadline = time.monotonic() + timeout
    stall += 0.05 * len(clients)
    last_events, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        live = [c for c in clients if c.connected]
        if all(c.finished.is_set() for c in live):
            return
        events = sum(c.turn.events + len(c.turn.final) for c in live)
        if events != last_events:
            last_events, last_change = events, time.monotonic()
        elif time.monotonic() - last_change > stall:
            return
        await asyncio.sleep(0.2)


def py_spy(target: Target, rnd: Round, out: Path | None) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` on the target's first server for this round (``--profile``)."""
    server = target.servers[0].proc
    if out is None or server is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9]+", "-", f"{target.name}-{rnd.chats}-{rnd.connect}-{rnd.pace_label}").strip("-")
    return subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(server.pid),
                             "--subprocesses", "--nonblocking", "--format", "speedscope",
                             "--output", str(out / f"{name}.speedscope.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def run_round(target: Target, rnd: Round, reply: str, provider: ProviderProcess | None,
                    timeout: float, stall: float, profile: Path | None = None) -> Result:
    expected = len(tokens(reply))
    if provider is not None:
        provider.configure(rnd.pace)
    await asyncio.to_thread(target.settle)
    sizes = target.log_sizes()
    round_began = time.monotonic()
    provider_cpu0 = provider.cpu() if provider is not None else 0.0
    clients = [Client(target.url, target.profile) for _ in range(rnd.chats)]
    spy = None
    if rnd.at_once:
        spy = py_spy(target, rnd, profile)
        cpu0 = target.cpu()
        await asyncio.gather(*(c.connect() for c in clients), return_exceptions=True)
    else:
        # In waves: a real page load is spread out too, and connecting is not what is measured here.
        for start in range(0, rnd.chats, WAVE):
            await asyncio.gather(*(c.connect() for c in clients[start:start + WAVE]), return_exceptions=True)
        await asyncio.sleep(1.0 + rnd.chats * 0.01)  # every chat has started (on_chat_start has run)
        spy = py_spy(target, rnd, profile)
        cpu0 = target.cpu()
    live = [c for c in clients if c.connected]
    began = time.perf_counter()
    await asyncio.gather(*(c.send() for c in live), return_exceptions=True)
    await wait_finished(clients, timeout, stall)
    cpu_turns = target.cpu() - cpu0
    await asyncio.to_thread(stop_py_spy, spy)
    ended = max((c.turn.done for c in clients if c.turn.done), default=time.perf_counter())
    await asyncio.gather(*(c.close() for c in clients))
    await asyncio.to_thread(target.settle, 180)  # the round's deferred work counts too
    cpu = target.cpu() - cpu0
    stats = provider.stats() if provider is not None else {}
    provider_cpu = provider.cpu() - provider_cpu0 if provider is not None else None
    firsts_chunk: dict[str, float] = stats.get("first_chunks", {})

    delivered = lost = wrong = events = 0
    firsts, turns, beyond = [], [], []
    for c in clients:
        t = c.turn
        events += t.events
        if t.first_token is not None and c.connected:
            firsts.append(t.first_token - t.sent)
            if t.first_token_wall is not None and c.marker in firsts_chunk:
                beyond.append(t.first_token_wall - firsts_chunk[c.marker])
        if t.done is not None:
            turns.append(t.done - t.sent)
        got = 0
        for mid, text in t.final.items():
            got += min(expected, len(tokens(text)))
            streamed = "".join(t.streamed.get(mid, []))
            if text != reply or (streamed and streamed != reply):
                wrong += 1
        delivered += got
        lost += expected * len(AGENTS) - got
    return Result(
        target.name, rnd, len(live), sum(1 for c in clients if c.turn.done is not None),
        delivered / max(ended - began, 1e-9), rnd.chats * rnd.pace if rnd.pace else None,
        pct(firsts, 0.5), pct(firsts, 0.95), pct(turns, 0.5), pct(turns, 0.95), lost, wrong,
        cpu * 1000 / delivered if delivered else float("nan"),
        (cpu - cpu_turns) * 1000 / delivered if delivered else float("nan"), target.serious_since(sizes),
        statistics.median(beyond) if beyond else None, events / max(len(live), 1),
        stats.get("completions"), provider_cpu, time.monotonic() - round_began)


async def warm_up(target: Target, reply: str, provider: ProviderProcess | None) -> None:
    """A few turns first (imports, caches, the first database writes), then a quiet server."""
    result = await run_round(target, Round(4, False, 0), reply, provider, 60, 30)
    if result.answered < 4:
        print(f"warning: {target.name} answered {result.answered} of 4 warm-up chats; log lines above WARNING: "
              f"{result.serious[:5]}", flush=True)


# --- the servers ------------------------------------------------------------------------------------------

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


def chorus_env(home: Path, model: dict[str, str], source: Path = ROOT, **extra: str) -> dict[str, str]:
    """``chorus run``'s environment: the model, its own data directory, defaults for the rest."""
    return {**ENV, "CHORUS_HOME": str(home), "CHORUS_AGENTS_DIR": str(source / "agents"),
            "CHORUS_KNOWLEDGE_DIR": str(source / "knowledge"), "CHORUS_FORBID_REAL_MODELS": "1", **model, **extra}


def model_env(provider: ProviderProcess | None, reply: str) -> dict[str, str]:
    if provider is None:
        return {"CHORUS_MODEL": "scripted", "CHORUS_SCRIPTED_REPLY": reply}
    return {"CHORUS_MODEL": "openai/bench", "CHORUS_MODEL_API_BASE": provider.url, "CHORUS_MODEL_API_KEY": "sk-bench"}


def baseline_server(work: Path, provider: ProviderProcess | None, reply: str) -> Server:
    cwd = work / "baseline"
    cwd.mkdir(parents=True)
    env = {**ENV, "CHORUS_SCRIPTED_REPLY": reply}
    if provider is None:
        env["BENCH_BASELINE_SCRIPTED"] = "1"
    else:
        # AutoGen's sample reads its model from model_config.yaml; the provider's name is unknown
        # to AutoGen, so model_info must be given.
        (cwd / "model_config.yaml").write_text(json.dumps({
            "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
            "config": {"model": "bench", "base_url": provider.url, "api_key": "sk-bench",
                       "model_info": {"vision": False, "function_calling": True, "json_output": False,
                                      "family": "unknown", "structured_output": False}}}, indent=2))
    return Server("baseline", [sys.executable, "-m", "chainlit", "run", str(ROOT / "bench/baseline/app.py"),
                               "--headless"], env, cwd)


def uv_lock_packages(lock: Path) -> set[tuple[str, str]]:
    text = lock.read_text()
    return set(re.findall(r'(?m)^\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', text))


@contextlib.contextmanager
def worktree(ref: str, work: Path, venv: str) -> Any:
    """A detached worktree of this repository at ``ref`` and the Python (and PYTHONPATH) that
    runs its code; removed afterwards. ``venv``: "shared" runs it on this checkout's environment
    with the worktree first on PYTHONPATH, "own" makes it an environment of its own
    (``uv sync --locked``), "auto" picks "shared" when every locked package of ``ref`` is
    locked here at the same version."""
    path = work / "compare"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        if venv == "auto":
            same = uv_lock_packages(path / "uv.lock") <= uv_lock_packages(ROOT / "uv.lock")
            venv = "shared" if same else "own"
        if venv == "own":
            uv = ENV.get("UV") or shutil.which("uv") or "uv"  # `uv run` says where it is in UV
            subprocess.run([uv, "sync", "--locked", "--quiet"], cwd=path, check=True,
                           env={k: v for k, v in ENV.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")})
            python, pythonpath = str(path / ".venv" / "bin" / "python"), ""
        else:
            python = sys.executable
            pythonpath = os.pathsep.join([str(path), *map(str, sorted(path.glob("plugins/*/src")))])
        env = {**ENV, "PYTHONPATH": pythonpath} if pythonpath else dict(ENV)
        # From the servers' kind of working directory: python puts it first on sys.path.
        where = subprocess.run([python, "-c", "import chorus; print(chorus.__file__)"], env=env, text=True,
                               capture_output=True, check=True, cwd=work).stdout.strip()
        if not Path(where).resolve().is_relative_to(path.resolve()):
            raise RuntimeError(f"--compare-with: {ref}'s Chorus would be imported from {where}")
        commit = subprocess.check_output(["git", "-C", str(path), "log", "-1", "--format=%h %s"], text=True).strip()
        print(f"--compare-with {ref}: {commit} ({venv} environment)", flush=True)
        yield path, python, pythonpath
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def two_workers(work: Path, model: dict[str, str]) -> AsyncIterator[Target | None]:
    """Two Chorus workers on a fresh PostgreSQL database behind nginx, as the two-worker test runs
    them; None, with the reason printed, when nginx or PostgreSQL is absent."""
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
            env = chorus_env(work / f"worker{i}" / "data", model, CHORUS_DATABASE_URL=url)
            workers.append(Server(f"worker{i}", [sys.executable, "-m", "chorus.cli", "run"], env,
                                  work / f"worker{i}").start())
        proxy = NginxProxy(work / "nginx", [w.port for w in workers]).start()
        yield Target("Chorus, 2 workers", proxy.url, "Panel", workers, rounds="waves")
    finally:
        if proxy is not None:
            proxy.terminate()
        for worker in workers:
            worker.stop()
        drop_database(url)


# --- the report -------------------------------------------------------------------------------------------

def ms(seconds: float | None) -> str:
    return "—" if seconds is None or seconds != seconds else f"{seconds * 1000:,.0f} ms"


def secs(seconds: float) -> str:
    return "—" if seconds != seconds else f"{seconds:.2f} s"


def print_detail(r: Result) -> None:
    offered = (f"{r.offered:,.0f} ({r.words_per_s / r.offered:.0%})" if r.offered else "—")
    cpu = ("—" if r.cpu_ms_per_word != r.cpu_ms_per_word else
           f"{r.cpu_ms_per_word:.2f} ms ({r.cpu_ms_per_word_after:.2f} after)")
    provider = "—" if r.provider_cpu is None else f"{r.provider_cpu:.1f} s"
    print(f"| {r.target} | {r.round.chats} | {r.round.connect} | {r.round.pace_label} | {r.connected} | {r.answered} "
          f"| {r.words_per_s:,.0f} | {offered} | {ms(r.first_p50)} / {ms(r.first_p95)} | {secs(r.turn_p50)} / "
          f"{secs(r.turn_p95)} | {r.lost} | {r.wrong} | {r.unanswered} | {cpu} | {len(r.serious)} | "
          f"{ms(r.beyond_p50)} | {r.completions if r.completions is not None else '—'} | {provider} "
          f"| {r.seconds:.0f} s |", flush=True)


DETAIL_HEAD = ("| server | chats | connect | provider pace | connected | answered | words/s | offered words/s (share) "
               "| first token p50 / p95 | turn p50 / p95 | lost | wrong | unanswered "
               "| server CPU per word (after the turns) | log lines > WARNING | beyond provider's first chunk p50 "
               "| completions | provider CPU | round |\n"
               "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def ratio(got: dict[str, Result | None], a: str, b: str) -> str:
    x, y = got.get(a), got.get(b)
    return "—" if x is None or y is None or not y.words_per_s else f"{x.words_per_s / y.words_per_s:.2f}×"


def print_summary(rounds: list[Round], names: list[str], results: dict[tuple[str, Round], Result],
                  compare: str | None) -> None:
    chorus = [n for n in names if n.startswith("Chorus")]
    head = ["chats", "connect", "provider pace", *(f"{n} words/s" for n in names), "× Chorus/baseline"]
    if compare:
        head.append(f"× Chorus/Chorus@{compare}")
    head.append("first token p50 " + " / ".join(names))
    head.append("at once: connected / answered / log lines > WARNING")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for rnd in rounds:
        row = [str(rnd.chats), rnd.connect, rnd.pace_label]
        got = {n: results.get((n, rnd)) for n in names}
        row += ["—" if r is None else f"{r.words_per_s:,.0f}" + (f" ({r.answered}/{rnd.chats} answered)"
                                                                  if r.answered < rnd.chats else "")
                for r in got.values()]

        row.append(ratio(got, "Chorus", "baseline") if "Chorus" in chorus else "—")
        if compare:
            row.append(ratio(got, "Chorus", f"Chorus@{compare}"))
        row.append(" / ".join("—" if r is None else ms(r.first_p50) for r in got.values()))
        row.append("; ".join(f"{n} {r.connected}/{r.answered}/{len(r.serious)}" for n, r in got.items()
                             if r is not None) if rnd.at_once else "")
        print("| " + " | ".join(row) + " |")


async def chunk_to_socket(url: str, chunk_log: Path, turns: int = 20) -> list[float]:
    """Scripted mode, per turn of one chat: from the scripted model's answer (server clock) to the
    first token at the client."""
    client = Client(url, "Panel")
    await client.connect()
    await asyncio.sleep(1.0)
    delays = []
    try:
        for _ in range(turns):
            chunk_log.write_text("")
            await client.send()
            await asyncio.wait_for(client.finished.wait(), 30)
            lines = chunk_log.read_text().split()
            if client.turn.first_token_wall is not None and lines:
                delays.append(client.turn.first_token_wall - float(lines[0]))
    finally:
        await client.close()
    return delays


def counts(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


async def main_async(args: argparse.Namespace) -> None:
    started = time.monotonic()
    reply = reply_text(args.words)
    scripted = args.model == "scripted"
    rounds = ([Round(n, False, 0) for n in counts(args.waves)] + [Round(n, False, args.pace) for n in
                                                                   counts(args.waves_paced)]
              + [Round(n, True, 0) for n in counts(args.at_once)] + [Round(n, True, args.pace) for n in
                                                                       counts(args.at_once_paced)])
    if scripted:  # no provider, no pace
        rounds = list(dict.fromkeys(Round(r.chats, r.at_once, 0, scripted=True) for r in rounds))
    print(f"{len(AGENTS)} agents x {len(tokens(reply))} words per turn; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.2f}; model: " + (SCRIPTED_LABEL if scripted else
                                                   "openai/bench on bench/provider.py over HTTP"), flush=True)
    results: dict[tuple[str, Round], Result] = {}
    with tempfile.TemporaryDirectory(prefix="chorus-load-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        provider = None if scripted else ProviderProcess(args.words, 0)
        if provider is not None:
            stack.callback(provider.stop)
        model = model_env(provider, reply)
        chunk_log = work / "chunks.log"
        if scripted:
            (work / "timed_chorus.py").write_text(TIMED_CHORUS)
            chorus_argv = [sys.executable, str(work / "timed_chorus.py")]
            model = {**model, "BENCH_CHUNK_LOG": str(chunk_log)}
        else:
            chorus_argv = [sys.executable, "-m", "chorus.cli", "run"]
        servers = [("baseline", baseline_server(work, provider, reply), None),
                   ("Chorus", Server("chorus", chorus_argv, chorus_env(work / "chorus" / "data", model),
                                     work / "chorus"), "Panel")]
        if args.compare_with:
            path, python, pythonpath = stack.enter_context(worktree(args.compare_with, work, args.compare_venv))
            env = chorus_env(work / "compare-run" / "data", model, path)
            if pythonpath:
                env["PYTHONPATH"] = pythonpath
            argv = ([python, str(work / "timed_chorus.py")] if scripted else [python, "-m", "chorus.cli", "run"])
            servers.append((f"Chorus@{args.compare_with}", Server("compare", argv, env, work / "compare-run"),
                            "Panel"))
        targets: list[Target] = []
        for name, server, profile in servers:
            stack.callback(server.stop)
            try:
                targets.append(Target(name, server.start().url, profile, [server]))
            except RuntimeError as exc:
                if not name.startswith("Chorus@"):
                    raise
                print(f"({name}: not measured, it did not start: {exc})", flush=True)
        async with contextlib.AsyncExitStack() as astack:
            if "2" in args.workers.split(","):
                workers = await astack.enter_async_context(two_workers(work, model))
                if workers is not None:
                    targets.append(workers)
            for target in targets:
                await warm_up(target, reply, provider)
            print("\n" + DETAIL_HEAD, flush=True)
            for rnd in rounds:
                for target in targets:
                    if target.rounds == "waves" and rnd.at_once:
                        continue
                    result = await run_round(target, rnd, reply, provider, args.timeout, args.stall, args.profile)
                    results[(target.name, rnd)] = result
                    print_detail(result)
            delays = await chunk_to_socket(targets[1].url, chunk_log) if scripted else []
        # Logs of the rounds that had errors, before the directory goes.
        for (name, rnd), r in results.items():
            if r.serious:
                print(f"\n{name}, {rnd.chats} chats {rnd.connect}, {rnd.pace_label}: {len(r.serious)} log lines "
                      "above WARNING, the first ones:")
                for line in list(dict.fromkeys(r.serious))[:8]:
                    print("    " + line[:300])
    print(f"\nAll in one run ({SCRIPTED_LABEL if scripted else 'HTTP provider: bench/provider.py'}; "
          "words = model chunks = tokens):\n")
    print_summary(rounds, [t.name for t in targets], results, args.compare_with)
    print(f"\n{(time.monotonic() - started) / 60:.1f} minutes in all; load average now {os.getloadavg()[0]:.2f}")
    if delays:
        print(f"\nscripted model's first chunk to the client, one chat, {len(delays)} turns: "
              f"p50 {statistics.median(delays) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waves", default="10,50,200", help="chat counts that connect in waves, instant provider")
    parser.add_argument("--waves-paced", default="200", help="chat counts that connect in waves, paced provider")
    parser.add_argument("--at-once", default="50,200,500", help="chat counts that connect at once, instant provider")
    parser.add_argument("--at-once-paced", default="", help="chat counts that connect at once, paced provider")
    parser.add_argument("--pace", type=float, default=50, help="the paced provider's words/s per stream")
    parser.add_argument("--words", type=int, default=50, help="words each agent streams per turn")
    parser.add_argument("--model", choices=("http", "scripted"), default="http",
                        help=f"http: bench/provider.py over HTTP; scripted: {SCRIPTED_LABEL}")
    parser.add_argument("--workers", default="1,2", help="'1' or '1,2' (two workers need nginx and PostgreSQL)")
    parser.add_argument("--compare-with", metavar="GITREF", help="also measure Chorus as it was at GITREF")
    parser.add_argument("--compare-venv", choices=("auto", "shared", "own"), default="auto",
                        help="GITREF's environment: this one (with its code first on PYTHONPATH) or its own")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy record every server during every round into DIR (speedscope files; "
                             "py-spy's own CPU then skews the figures)")
    parser.add_argument("--timeout", type=float, default=600, help="longest wait for a round's turns, seconds")
    parser.add_argument("--stall", type=float, default=15,
                        help="stop waiting for a round once nothing has streamed for this many seconds "
                             "(plus 0.05 s a chat)")
    args = parser.parse_args()

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so that the servers stop and the worktree goes, as on Ctrl-C

    signal.signal(signal.SIGTERM, interrupted)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
