"""Teams as a service, on the users' path: the OpenAI-compatible API against the page's socket, and
background runs (throughput with one and two executing processes, and recovery after kill -9).

    python3 -m uv run --locked --group test --group bench python bench/service.py
        [--chats 1,10,50] [--pace 50] [--words 50] [--runs 20] [--no-postgres]

What runs. ``bench/provider.py`` (an OpenAI-compatible server in its own process, streaming
``--words`` words one per chunk at ``--pace`` chunks/s per stream, like a real provider) and, on
it, in processes of their own on 127.0.0.1:

1. **API vs socket**, one ``chorus run`` (SQLite, memory and tracing on, as by default; the
   ``Panel`` team: two agents answer each message). For each N in ``--chats``: N streaming
   ``/v1/chat/completions`` requests sent at the same instant with the official ``openai``
   client, then N socket chats (the page's protocol) that each send one message at the same
   instant. Per side: first token p50/p95 (from sending to the first streamed text) and words/s
   delivered over the round. Both sides talk to the same server, one after the other.
2. **Runs per minute**: ``--runs`` background runs posted at once (``POST /api/runs``, the solo
   team: one agent, one model call), timed until the last one is completed; first with one
   executing process, then with two. On a fresh PostgreSQL database: ``chorus run`` with
   ``CHORUS_RUN_CONCURRENCY=0`` (it only accepts runs) and one, then two, ``chorus worker``
   processes (``CHORUS_RUN_CONCURRENCY=4`` each). Without PostgreSQL (or with ``--no-postgres``) this part
   is skipped, and says so.
3. **Recovery after kill -9**: one run of two agents whose second reply is cut off by killing
   the process that executes it (``chorus run`` on SQLite); restarted at once. Printed: how long
   an uninterrupted run takes, and from the kill to the recovered run's end (start-up of the new
   process included), and the provider requests each needed.

The figures are one run on whatever machine runs it; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from load import Client, ProviderProcess, Server, chorus_env, tokens  # noqa: E402
from workers import create_database, drop_database  # noqa: E402

PANEL = "Panel"
PASSWORD = "bench-password-123"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "chorus.cli", *args], env=env, cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"chorus {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout.strip()


def account_and_key(env: dict[str, str], cwd: Path) -> str:
    cli(env, cwd, "users", "add", "bench", "--password-stdin", stdin=PASSWORD + "\n")
    return cli(env, cwd, "keys", "create", "--user", "bench")


class LoggedInClient(Client):
    """A socket chat of the bench account (with accounts on, the socket wants the login cookie)."""

    def __init__(self, url: str, profile: str | None, cookie: str) -> None:
        super().__init__(url, profile)
        self.cookie = cookie

    async def connect(self) -> None:
        import uuid

        auth = {"clientType": "webapp", "sessionId": self.session_id, "threadId": str(uuid.uuid4()),
                "chatProfile": self.profile or ""}
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"], auth=auth,
                               headers={"Cookie": f"X-Chainlit-Session-id={self.session_id}; {self.cookie}"},
                               wait_timeout=60)
        await self.sio.emit("connection_successful")
        self.connected = True


async def api_round(url: str, key: str, chats: int) -> tuple[list[float], int, float]:
    """N streaming chat completions at once: (first-token latencies, words, seconds)."""
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=300,
                                http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=chats + 10),
                                                              timeout=300))
    gate = asyncio.Event()

    async def one(i: int) -> tuple[float, int]:
        await gate.wait()
        sent = time.perf_counter()
        first = None
        words = 0
        stream = await client.chat.completions.create(
            model="chorus/panel", stream=True,
            messages=[{"role": "user", "content": f"Tell me about streaming. [chat api-{i}]"}])
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                words += len(tokens(chunk.choices[0].delta.content))
        return (first or time.perf_counter()) - sent, words

    tasks = [asyncio.create_task(one(i)) for i in range(chats)]
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    gate.set()
    got = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await client.close()
    return [g[0] for g in got], sum(g[1] for g in got), elapsed


async def socket_round(url: str, cookie: str, chats: int) -> tuple[list[float], int, float, int]:
    """N socket chats sending at once: (first-token latencies, words, seconds, unanswered)."""
    clients = [LoggedInClient(url, PANEL, cookie) for _ in range(chats)]
    await asyncio.gather(*(c.connect() for c in clients))
    await asyncio.sleep(1.0)  # every chat has started
    start = time.perf_counter()
    await asyncio.gather(*(c.send() for c in clients))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.finished.wait() for c in clients)), timeout=300)
    elapsed = time.perf_counter() - start
    firsts = [c.turn.first_token - c.turn.sent for c in clients if c.turn.first_token is not None]
    words = sum(len(tokens(text)) for c in clients for text in c.turn.final.values())
    unanswered = sum(1 for c in clients if c.turn.done is None)
    await asyncio.gather(*(c.close() for c in clients))
    return firsts, words, elapsed, unanswered


async def part_api_vs_socket(work: Path, provider: ProviderProcess, chats: list[int]) -> None:
    env = chorus_env(work / "data", {"CHORUS_MODEL": "openai/bench", "CHORUS_MODEL_API_BASE": provider.url,
                                     "CHORUS_MODEL_API_KEY": "sk-bench"}, CHORUS_API_RATE_LIMIT="")
    key = account_and_key(env, work)
    server = Server("chorus", [sys.executable, "-m", "chorus.cli", "run"], env, work).start()
    try:
        cookie = httpx.post(server.url + "/login", data={"username": "bench", "password": PASSWORD}, timeout=30)
        cookie_header = "; ".join(f"{k}={v}" for k, v in cookie.cookies.items())
        await api_round(server.url, key, 2)  # warm up both paths
        await socket_round(server.url, cookie_header, 2)
        print("\n## 1. API vs socket (same server, same provider, paced; Panel team: 2 replies per message)\n")
        print("| chats at once | API first token p50 / p95 | socket first token p50 / p95 | API words/s | "
              "socket words/s | API / socket words/s |")
        print("|---|---|---|---|---|---|")
        for n in chats:
            a_first, a_words, a_secs = await api_round(server.url, key, n)
            await asyncio.sleep(2)
            s_first, s_words, s_secs, unanswered = await socket_round(server.url, cookie_header, n)
            await asyncio.sleep(2)
            a_rate, s_rate = a_words / a_secs, s_words / s_secs
            note = f" ({unanswered} socket chats unanswered)" if unanswered else ""
            print(f"| {n} | {pct(a_first, .5) * 1000:.0f} / {pct(a_first, .95) * 1000:.0f} ms | "
                  f"{pct(s_first, .5) * 1000:.0f} / {pct(s_first, .95) * 1000:.0f} ms | {a_rate:.0f} | "
                  f"{s_rate:.0f} | {a_rate / s_rate:.2f}{note} |", flush=True)
    finally:
        server.stop()


def solo_agents(work: Path) -> Path:
    agents = work / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / "solo.yaml").write_text("name: solo\ntype: round_robin\nmembers: [assistant]\ndefault: true\n"
                                      "termination:\n  max_messages: 2\n")
    (agents / "duo.yaml").write_text("name: duo\ntype: round_robin\nmembers: [assistant, guide]\n"
                                     "termination:\n  max_messages: 3\n")
    return agents


async def post_runs(url: str, key: str, team: str, count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        made = await asyncio.gather(*(http.post("/api/runs", headers={"Authorization": f"Bearer {key}"},
                                                json={"team": team, "input": f"Run {i}, please. [chat run-{i}]"})
                                      for i in range(count)))
    for answer in made:
        assert answer.status_code == 202, answer.text
    return [a.json()["id"] for a in made]


async def wait_runs(url: str, key: str, ids: list[str], timeout: float = 600) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while len(done) < len(ids) and time.monotonic() < deadline:
            for run_id in ids:
                if run_id not in done:
                    got = (await http.get(f"/api/runs/{run_id}", headers={"Authorization": f"Bearer {key}"})).json()
                    if got["status"] in ("completed", "failed", "cancelled"):
                        done[run_id] = got
            await asyncio.sleep(0.2)
    return done


async def part_runs_per_minute(work: Path, provider: ProviderProcess, runs: int) -> None:
    print(f"\n## 2. Background runs per minute ({runs} posted at once; solo team: one model call each)\n")
    try:
        url = create_database()
    except Exception as exc:
        print(f"skipped: PostgreSQL is not reachable ({type(exc).__name__}: {exc})")
        return
    try:
        env = chorus_env(work / "data", {"CHORUS_MODEL": "openai/bench", "CHORUS_MODEL_API_BASE": provider.url,
                                         "CHORUS_MODEL_API_KEY": "sk-bench"},
                         CHORUS_DATABASE_URL=url, CHORUS_MEMORY="false", CHORUS_AGENTS_DIR=str(solo_agents(work)),
                         CHORUS_API_RATE_LIMIT="", CHORUS_RUN_CONCURRENCY="0")
        key = account_and_key(env, work)
        web = Server("web", [sys.executable, "-m", "chorus.cli", "run"], env, work).start()
        workers: list[subprocess.Popen[bytes]] = []
        print("| executing processes | runs | seconds | runs/minute | completed |")
        print("|---|---|---|---|---|")
        try:
            for count in (1, 2):
                while len(workers) < count:
                    log = (work / f"worker-{len(workers)}.log").open("wb")
                    workers.append(subprocess.Popen([sys.executable, "-m", "chorus.cli", "worker"],
                                                    env={**env, "CHORUS_RUN_CONCURRENCY": "4"}, cwd=work, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True))
                await asyncio.sleep(12)  # the new worker is up (imports, DBOS launch)
                await wait_runs(web.url, key, await post_runs(web.url, key, "solo", 2))  # warm up
                start = time.perf_counter()
                ids = await post_runs(web.url, key, "solo", runs)
                done = await wait_runs(web.url, key, ids)
                secs = time.perf_counter() - start
                completed = sum(1 for r in done.values() if r["status"] == "completed")
                print(f"| {count} | {runs} | {secs:.1f} | {runs / secs * 60:.0f} | {completed} |", flush=True)
        finally:
            for proc in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            web.stop()
    finally:
        drop_database(url)


async def part_recovery(work: Path, provider: ProviderProcess) -> None:
    print("\n## 3. A run cut off by kill -9 (duo team: two replies; the second cut off; chorus run on SQLite)\n")
    env = chorus_env(work / "data", {"CHORUS_MODEL": "openai/bench", "CHORUS_MODEL_API_BASE": provider.url,
                                     "CHORUS_MODEL_API_KEY": "sk-bench"},
                     CHORUS_MEMORY="false", CHORUS_AGENTS_DIR=str(solo_agents(work)))
    key = account_and_key(env, work)
    server = Server("chorus", [sys.executable, "-m", "chorus.cli", "run"], env, work).start()
    provider.configure(provider_pace := 10.0)  # slow enough to kill it mid-reply
    try:
        before = provider.stats()["completions"]
        start = time.perf_counter()
        ids = await post_runs(server.url, key, "duo", 1)
        await wait_runs(server.url, key, ids)
        whole = time.perf_counter() - start
        asked_whole = provider.stats()["completions"] - before
        before = provider.stats()["completions"]
        ids = await post_runs(server.url, key, "duo", 1)
        while provider.stats()["completions"] - before < 2:  # until the second reply has begun
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # and is half written
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        killed = time.perf_counter()
        server = Server("chorus", [sys.executable, "-m", "chorus.cli", "run"], env, work, port=server.port).start()
        done = await wait_runs(server.url, key, ids)
        recovered = time.perf_counter() - killed
        asked = provider.stats()["completions"] - before
        run = done[ids[0]]
        print("| uninterrupted run | model calls | kill -9 to the recovered run's end (restart included) | "
              "model calls | attempts | status |")
        print("|---|---|---|---|---|---|")
        print(f"| {whole:.1f} s | {asked_whole} | {recovered:.1f} s | {asked} (the cut-off one twice) | "
              f"{run['attempts']} | {run['status']} |")
        print(f"\n(provider paced at {provider_pace:.0f} words/s for this part)")
    finally:
        server.stop()


async def main_async(args: argparse.Namespace) -> None:
    provider = ProviderProcess(args.words, args.pace)
    try:
        with tempfile.TemporaryDirectory(prefix="chorus-bench-service-") as tmp:
            work = Path(tmp)
            print(f"# Teams as a service: provider over HTTP, {args.words} words per reply at {args.pace:.0f} "
                  f"words/s per stream; {os.cpu_count()} CPUs")
            await part_api_vs_socket(work / "api", provider, [int(n) for n in args.chats.split(",") if n])
            if not args.no_postgres:
                provider.configure(args.pace)
                await part_runs_per_minute(work / "runs", provider, args.runs)
            await part_recovery(work / "recovery", provider)
    finally:
        provider.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", default="1,10,50")
    parser.add_argument("--pace", type=float, default=50.0)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
