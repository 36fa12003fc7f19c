"""Traces reach a real MLflow tracking server, every one of them, also from a process that stops right
after its turns; `chorus mlflow` serves such a server offline and stops every process it started.

One server for the module (``chorus mlflow --backend-store-uri sqlite:///...`` started without the
offline switches in its environment, as an operator's shell has none): it takes 20-30 s to start.
The last test stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, ROOT, ChorusServer
from test_tracing import clean_script, collect, traced_chorus  # noqa: F401  (clean_script: autouse fixture)
from workers import free_port

from chorus._env import OFFLINE_DEFAULTS
from chorus.events import DoneEvent
from chorus.models import scripted_model

START_TIMEOUT_S = 240  # a loaded 2-core machine: 20-30 s idle, over 100 s measured under load
TRACE_SETTINGS = {"CHORUS_TRACING": "true", "CHORUS_MEMORY": "false", "CHORUS_OFFLINE_TOKEN_DELAY": "0",
                  "CHORUS_AGENTS_DIR": str(ROOT / "agents"), "CHORUS_FORBID_REAL_MODELS": "1",
                  # a loaded test machine needs longer than the default to write a few traces at exit
                  "CHORUS_TRACE_FLUSH_TIMEOUT": "120"}


@dataclass
class TrackingServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def requests(self, line: str) -> int:
        """How many requests like ``POST /v1/traces `` the server has answered (its access log)."""
        return self.log.read_text(errors="replace").count(line)


def _processes() -> dict[int, tuple[int, int, str]]:
    """Running processes: pid -> (session id, parent pid, start time); zombies have stopped."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] != "Z":
                table[int(entry.name)] = (int(fields[3]), int(fields[1]), fields[19])
    return table


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _session(leader: int) -> dict[int, str]:
    """The processes `chorus mlflow` (a session leader here) and everything it started run in: pid -> start."""
    return {pid: started for pid, (sid, _parent, started) in _processes().items() if sid == leader}


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _kill_session(leader: int) -> None:
    _kill(_session(leader))


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_DEFAULTS}  # `chorus mlflow` must set them
    env["CHORUS_HOME"] = str(root / "home")
    log = root / "server.log"
    with log.open("wb") as out:
        # A session of its own: everything the command starts can be found (and cleaned up) afterwards.
        proc = subprocess.Popen(
            [sys.executable, "-m", "chorus.cli", "mlflow", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "art")],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = TrackingServer(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        _kill_session(proc.pid)  # whatever a failed test left behind


def _wait_until_serving(server: TrackingServer) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:  # our command failed: never a reason to skip
            pytest.fail(f"`chorus mlflow` exited with status {server.proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    message = f"the MLflow server did not answer within {START_TIMEOUT_S} s:\n{server.output()}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def server_traces(url: str, experiment: str) -> dict[str, Any]:
    """The traces on the server, read back with MLflow's own client: turn id -> trace."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    traces = client.search_traces(locations=[found.experiment_id], max_results=500)
    return {t.info.trace_metadata["chorus.turn_id"]: t for t in traces}


def _env(server: TrackingServer, home: Path, experiment: str) -> dict[str, str]:
    return {**os.environ, **TRACE_SETTINGS, "CHORUS_HOME": str(home),
            "CHORUS_MLFLOW_TRACKING_URI": server.url, "CHORUS_MLFLOW_EXPERIMENT": experiment}


async def test_every_turn_is_on_the_tracking_server_with_its_tree(tracking_server: TrackingServer,
                                                                  tmp_path: Path) -> None:
    chorus = traced_chorus(tmp_path, mlflow_tracking_uri=tracking_server.url, mlflow_experiment="in-process")
    assert chorus.tracer is not None
    span_posts = tracking_server.requests("POST /v1/traces ")
    turns: list[str] = []
    for n in range(5):
        scripted_model.queue("alice", f"answer {n}", "bob", f"and mine {n}")
        done = (await collect(chorus, f"question {n}"))[-1]
        assert isinstance(done, DoneEvent) and done.stop_reason != "error"
        turns.append(done.turn_id)
    assert await asyncio.to_thread(chorus.tracer.flush, 120)

    traces = server_traces(tracking_server.url, "in-process")
    assert sorted(traces) == sorted(turns)  # all of them, one trace per turn
    for n, turn_id in enumerate(turns):
        trace = traces[turn_id]
        meta = trace.info.trace_metadata
        assert meta["mlflow.trace.user"] == "alice@example.com" and meta["mlflow.trace.session"] == "thread-42"
        assert meta["chorus.team"] == "pair" and trace.info.state == "OK"
        spans = {s.name: s for s in trace.data.spans}
        assert spans["turn"].inputs == {"message": f"question {n}"}
        assert spans["agent alice"].outputs == f"answer {n}" and spans["agent bob"].outputs == f"and mine {n}"
        assert any(s.span_type == "CHAT_MODEL" for s in trace.data.spans)
    # Each trace's spans (9 here) went to the server in one request, not one request per span.
    deadline = time.monotonic() + 5  # the server logs a request once it has answered it
    while tracking_server.requests("POST /v1/traces ") < span_posts + 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tracking_server.requests("POST /v1/traces ") - span_posts == 5


EXITING_SCRIPT = """
import asyncio, sys
from chorus.turn import Chorus, run_turn

async def main(turns):
    chorus = Chorus.load()
    session = chorus.open_session(user_id="leaving@example.com", thread_id="last-words")
    for n in range(turns):
        events = [e async for e in run_turn(session, f"question {n}: what can you do?")]
        print(events[-1].turn_id, flush=True)

asyncio.run(main(int(sys.argv[1])))  # and exit at once, as a stopping server does: no flush of our own
"""


def test_a_process_that_exits_right_after_its_turns_delivers_every_trace(tracking_server: TrackingServer,
                                                                          tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", EXITING_SCRIPT, "3"], capture_output=True, text=True,
                            env=_env(tracking_server, tmp_path, "exiting"), timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    turns = result.stdout.split()
    assert len(turns) == 3
    traces = server_traces(tracking_server.url, "exiting")  # read at once: the process is gone
    assert sorted(traces) == sorted(turns), result.stderr
    assert {t.info.trace_metadata["mlflow.trace.user"] for t in traces.values()} == {"leaving@example.com"}


def test_chorus_ask_leaves_its_trace_on_the_server(tracking_server: TrackingServer, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "chorus.cli", "ask", "What is Chorus?", "--json"],
                            capture_output=True, text=True, env=_env(tracking_server, tmp_path, "ask"),
                            timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout.splitlines()[-1])
    assert done["type"] == "done"
    traces = server_traces(tracking_server.url, "ask")
    assert list(traces) == [done["turn_id"]], result.stderr
    trace = traces[done["turn_id"]]
    assert trace.data.spans[0].name == "turn" and trace.data.spans[0].inputs == {"message": "What is Chorus?"}


async def test_stopping_chorus_run_right_after_its_turns_loses_no_trace(tracking_server: TrackingServer,
                                                                        tmp_path: Path) -> None:
    from chat_client import ChatClient

    env = {**TRACE_SETTINGS, "CHORUS_MLFLOW_TRACKING_URI": tracking_server.url, "CHORUS_MLFLOW_EXPERIMENT": "run"}
    chat = ChorusServer(tmp_path, env=env).start(timeout=120)
    try:
        client = await ChatClient(chat).connect()
        turns: list[str] = []
        for n in range(4):
            client.messages.clear()
            await client.send(f"question {n}")
            usage = await client.wait_for(lambda m: m.get("name") == "tokens and cost"
                                          and "/chorus/trace/" in (m.get("output") or ""), timeout=60)
            turns.append(usage["output"].rsplit("/chorus/trace/", 1)[1].rstrip(")"))
        await client.sio.disconnect()
        chat.proc.send_signal(signal.SIGTERM)  # an operator's restart, right after the last answer
        assert chat.proc.wait(60) == 0
    finally:
        chat.stop()
    traces = server_traces(tracking_server.url, "run")
    assert sorted(traces) == sorted(turns), chat.output()[-3000:]


def test_stopping_chorus_mlflow_stops_every_process_it_started(tracking_server: TrackingServer) -> None:
    leader = tracking_server.proc.pid
    deadline = time.monotonic() + 120  # MLflow starts its job runner's huey consumers after serving
    while sum("huey_consumer" in _cmdline(pid) for pid in _session(leader)) < 7 and time.monotonic() < deadline:
        time.sleep(0.5)
    started = _session(leader)
    assert sum("huey_consumer" in _cmdline(pid) for pid in started) >= 7, [_cmdline(p) for p in started]

    tracking_server.proc.send_signal(signal.SIGTERM)
    assert tracking_server.proc.wait(60) == 0
    survivors = {pid: _cmdline(pid) for pid, begun in _session(leader).items() if started.get(pid, begun) == begun}
    assert survivors == {}


CHILD_THAT_HANGS_ON = """
import signal, subprocess, sys, time
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
stubborn = subprocess.Popen([sys.executable, "-c", code])                          # ignores SIGTERM
runaway = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)   # left the process group
print(stubborn.pid, runaway.pid, flush=True)
time.sleep(300)
"""


def test_the_mlflow_command_stops_even_processes_that_ignore_sigterm_or_leave_its_group(tmp_path: Path) -> None:
    supervisor = ("import sys; from chorus.cli import _run_process_group; "
                  f"sys.exit(_run_process_group([sys.executable, '-c', {CHILD_THAT_HANGS_ON!r}], stop_timeout=1))")
    proc = subprocess.Popen([sys.executable, "-c", supervisor], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(0.3)  # the grandchildren install their handlers
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        assert proc.wait(30) == 0
        assert time.monotonic() - started < 10
        alive = _processes()
        assert [pid for pid in pids if pid in alive] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_session(proc.pid)
        _kill(locals().get("pids", []))
