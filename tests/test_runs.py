"""Background runs (README, "Background runs") against a real ``chorus run``: a run is accepted
(202), executed as a DBOS workflow, answered, stored as a conversation of the key's user; its
events come once each, also to a client that reconnects; it can be cancelled (twice); a webhook
reaches only hosts on the allow-list; a second user's key sees none of it; and a run interrupted
by SIGTERM or kill -9 goes on after the restart from its last finished model call (counted on a
fake provider over HTTP), ending as an uninterrupted run does. Two ``chorus worker`` processes on
a fresh PostgreSQL database: one is killed in the middle of a run and the other finishes it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import FIRST_PARTY_PLUGINS, ChorusServer, fresh_postgres_database
from test_api import make_keys
from test_quota import add_accounts
from workers import stop_process

QUESTION = "Which albums does AC/DC have?"


class Hooks:
    """A webhook receiver on 127.0.0.1: the bodies it got, by path."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                hooks.got.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    made = Hooks()
    yield made
    made.close()


@pytest.fixture(scope="module")
def runs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChorusServer, dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("runs")
    add_accounts(workdir / "data", "ann", "bob")
    keys = make_keys(workdir / "data", ("ann", "ann", None), ("bob", "bob", None),
                     ("ann-music", "ann", ["music-store"]), ("ann-approvals", "ann", None))
    srv = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0.01", "CHORUS_RUN_WEBHOOK_HOSTS": "127.0.0.1",
                                     "CHORUS_PLUGINS": FIRST_PARTY_PLUGINS + ",chorus-builder",
                                     "CHORUS_API_MAX_BODY_KB": "16"})
    srv.start()
    yield srv, keys
    srv.stop()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _wait(http: httpx.AsyncClient, run_id: str, key: str, until: tuple[str, ...] = ("completed", "failed",
                                                                                          "cancelled"),
                timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await http.get(f"/api/runs/{run_id}", headers=_auth(key))
        assert got.status_code == 200, got.text
        if got.json()["status"] in until:
            return dict(got.json())
        await asyncio.sleep(0.2)
    raise AssertionError(f"run {run_id} did not reach {until}: {got.json()}")


async def _events(http: httpx.AsyncClient, run_id: str, key: str, after: int | None = None,
                  stop_after: int | None = None) -> tuple[list[tuple[int, str, dict[str, Any]]], dict[str, Any] | None]:
    """The run's events as the SSE endpoint sends them (reconnecting with Last-Event-ID when
    ``after`` is given); stops after ``stop_after`` events (hanging up) or at ``end``."""
    headers = _auth(key) | ({"Last-Event-ID": str(after)} if after is not None else {})
    got: list[tuple[int, str, dict[str, Any]]] = []
    end = None
    async with http.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as r:
        assert r.status_code == 200
        seq, kind = None, ""
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if kind == "end":
                    end = data
                    break
                assert seq is not None
                got.append((seq, kind, data))
                seq = None
                if stop_after is not None and len(got) >= stop_after:
                    break
    return got, end


async def test_a_run_is_answered_in_the_background_and_opens_as_a_conversation(
        runs_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = runs_server
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        made = await http.post("/api/runs", headers=_auth(keys["ann"]), json={"team": "music-store", "input": QUESTION})
        assert made.status_code == 202, made.text
        run = made.json()
        assert run["status"] in ("queued", "running") and made.headers["location"] == f"/api/runs/{run['id']}"
        done = await _wait(http, run["id"], keys["ann"])
        assert done["status"] == "completed", done
        assert "AC/DC" in done["result"]["content"] and done["result"]["agents"] == ["catalog"]
        assert done["usage"]["total_tokens"] > 0 and done["attempts"] == 1
        events, end = await _events(http, run["id"], keys["ann"])
        assert end == {"status": "completed", "last_event_id": len(events)}
        assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
        assert events[-1][1] == "done" and any(kind == "message" for _, kind, _ in events)
        listed = await http.get("/api/runs?status=completed", headers=_auth(keys["ann"]))
        assert run["id"] in [r["id"] for r in listed.json()["data"]]
        # The conversation is Ann's, in her history, with her message and the reply.
        engine = sa.create_engine(f"sqlite:///{srv.workdir / 'data' / 'chorus.db'}")
        with engine.connect() as conn:
            owner = conn.execute(sa.text('SELECT "userIdentifier" FROM threads WHERE id = :t'),
                                 {"t": done["thread_id"]}).scalar()
            steps = conn.execute(sa.text('SELECT type, output FROM steps WHERE "threadId" = :t ORDER BY "createdAt"'),
                                 {"t": done["thread_id"]}).all()
        engine.dispose()
        assert owner == "ann"
        assert [s[0] for s in steps] == ["user_message", "assistant_message"] and steps[0][1] == QUESTION
        # A second run in the same conversation: the team remembers the first.
        again = await http.post("/api/runs", headers=_auth(keys["ann"]), json={
            "team": "music-store", "input": "And which tracks are on Let There Be Rock?",
            "thread_id": done["thread_id"]})
        assert again.status_code == 202, again.text
        second = await _wait(http, again.json()["id"], keys["ann"])
        assert second["status"] == "completed" and second["thread_id"] == done["thread_id"]
    # The terminal sees the runs too.
    listed_cli = subprocess.run([sys.executable, "-m", "chorus.cli", "runs", "list", "--json"], env=srv.env,
                                cwd=srv.workdir, capture_output=True, text=True, timeout=120)
    assert listed_cli.returncode == 0, listed_cli.stderr
    assert {r["id"] for r in json.loads(listed_cli.stdout)} >= {run["id"], again.json()["id"]}
    shown = subprocess.run([sys.executable, "-m", "chorus.cli", "runs", "show", run["id"]], env=srv.env,
                           cwd=srv.workdir, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "status: completed" in shown.stdout and "AC/DC" in shown.stdout


async def test_a_client_that_reconnects_with_last_event_id_gets_each_event_once(
        runs_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = runs_server
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        made = await http.post("/api/runs", headers=_auth(keys["ann"]), json={
            "team": "chorus", "input": "Tell me about the refund policy in detail."})
        run_id = made.json()["id"]
        first, end = await _events(http, run_id, keys["ann"], stop_after=3)  # and hang up mid-run
        assert end is None and len(first) == 3
        rest, end = await _events(http, run_id, keys["ann"], after=first[-1][0])
        assert end is not None and end["status"] == "completed"
        seqs = [seq for seq, _, _ in first + rest]
        assert seqs == list(range(1, len(seqs) + 1))  # none lost, none twice
        everything, _ = await _events(http, run_id, keys["ann"])
        assert everything == first + rest


async def test_a_second_user_with_the_first_users_run_gets_nothing(
        runs_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = runs_server
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        made = await http.post("/api/runs", headers=_auth(keys["ann"]), json={"team": "music-store", "input": QUESTION})
        run = await _wait(http, made.json()["id"], keys["ann"])
        bob = _auth(keys["bob"])
        for method, path in (("GET", f"/api/runs/{run['id']}"), ("GET", f"/api/runs/{run['id']}/events"),
                             ("POST", f"/api/runs/{run['id']}/cancel")):
            answer = await http.request(method, path, headers=bob)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"]["code"] == "run_not_found"
        assert all(r["id"] != run["id"] for r in (await http.get("/api/runs", headers=bob)).json()["data"])
        into = await http.post("/api/runs", headers=bob, json={"team": "music-store", "input": "Mine now.",
                                                                "thread_id": run["thread_id"]})
        assert into.status_code == 404 and into.json()["error"]["code"] == "conversation_not_found"
        still = await _wait(http, run["id"], keys["ann"])
        assert still == run  # unchanged
        # A key limited to the music store cannot start another team's run.
        other = await http.post("/api/runs", headers=_auth(keys["ann-music"]), json={"team": "chorus", "input": "hi"})
        assert other.status_code == 404 and other.json()["error"]["param"] == "team"


async def test_a_run_waits_for_an_approval_given_through_the_api_and_only_its_user_may_give_it(
        runs_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = runs_server
    # A key of ann's own for this test: its polling must not spend the rate limit of the module's other tests.
    ann, bob = _auth(keys["ann-approvals"]), _auth(keys["bob"])
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        made = await http.post("/api/runs", headers=ann, json={"team": "music-store",
                                                              "input": "My email is ana.souza@example.com"})
        verified = await _wait(http, made.json()["id"], keys["ann-approvals"])
        assert "verified as customer 1" in verified["result"]["content"]
        made = await http.post("/api/runs", headers=ann, json={"team": "music-store", "input": "Buy the song Black Dog",
                                                              "thread_id": verified["thread_id"]})
        run_id = made.json()["id"]
        deadline, pending = time.monotonic() + 60, []
        while not pending and time.monotonic() < deadline:
            listed = await http.get(f"/api/runs/{run_id}/approvals?status=pending", headers=ann)
            assert listed.status_code == 200, listed.text
            pending = listed.json()["data"]
            await asyncio.sleep(0.5)
        assert [(p["agent"], p["tool"], p["arguments"]) for p in pending] == [
            ("invoices", "order_track", {"title": "Black Dog"})]
        assert (await http.get(f"/api/runs/{run_id}", headers=ann)).json()["status"] == "running"  # it waits
        approval = pending[0]["id"]
        # Bob, holding ann's run and request ids, can neither see nor answer it.
        for method, path in (("GET", f"/api/runs/{run_id}/approvals"),
                             ("POST", f"/api/runs/{run_id}/approvals/{approval}")):
            refused = await http.request(method, path, headers=bob, json={"approve": True})
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "run_not_found", refused.text
        bad = await http.post(f"/api/runs/{run_id}/approvals/{approval}", headers=ann, json={"approve": "yes"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "approve"
        missing = await http.post(f"/api/runs/{run_id}/approvals/nope", headers=ann, json={"approve": True})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "approval_not_found"
        answered = await http.post(f"/api/runs/{run_id}/approvals/{approval}", headers=ann, json={"approve": True})
        assert answered.status_code == 200 and answered.json()["status"] == "approved", answered.text
        again = await http.post(f"/api/runs/{run_id}/approvals/{approval}", headers=ann, json={"approve": False})
        assert again.status_code == 409 and again.json()["error"]["code"] == "approval_closed"
        done = await _wait(http, run_id, keys["ann-approvals"])
        assert done["status"] == "completed" and "Order **1** is placed" in done["result"]["content"], done
        events, _ = await _events(http, run_id, keys["ann-approvals"])
        kinds = [kind for _, kind, _ in events]
        assert kinds.index("approval") < kinds.index("approval_done")  # the stream tells a client, too


async def test_a_run_cancelled_twice_stops_once_and_a_finished_run_is_left_alone(
        runs_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = runs_server
    ann = _auth(keys["ann"])
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        made = await http.post("/api/runs", headers=ann, json={
            "team": "builder", "input": "Build a small command-line tool that counts words in a file."})
        run_id = made.json()["id"]
        await _wait(http, run_id, keys["ann"], until=("running",))
        first = await http.post(f"/api/runs/{run_id}/cancel", headers=ann)
        second = await http.post(f"/api/runs/{run_id}/cancel", headers=ann)
        assert first.status_code == 200 and second.status_code == 200
        assert second.json()["cancel_requested"] is True
        done = await _wait(http, run_id, keys["ann"])
        assert done["status"] == "cancelled"
        again = await http.post(f"/api/runs/{run_id}/cancel", headers=ann)
        assert again.status_code == 200 and again.json()["status"] == "cancelled"
        finished = await http.post("/api/runs", headers=ann, json={"team": "music-store", "input": QUESTION})
        completed = await _wait(http, finished.json()["id"], keys["ann"])
        late = await http.post(f"/api/runs/{completed['id']}/cancel", headers=ann)
        assert late.status_code == 200 and late.json()["status"] == "completed"
        assert late.json()["result"] == completed["result"]


async def test_one_run_at_a_time_in_a_conversation_and_a_removed_account_leaves_no_runs(
        runs_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = runs_server
    ann = _auth(keys["ann"])
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        first = await http.post("/api/runs", headers=ann, json={"team": "builder", "input": "Build a CLI tool."})
        thread = first.json()["thread_id"]
        done_first = await _wait(http, first.json()["id"], keys["ann"], until=("running", "completed"))
        if done_first["status"] == "running":
            busy = await http.post("/api/runs", headers=ann, json={"team": "builder", "input": "And tests.",
                                                                    "thread_id": thread})
            assert busy.status_code == 409 and busy.json()["error"]["code"] == "conversation_busy"
        await _wait(http, first.json()["id"], keys["ann"])
        later = await http.post("/api/runs", headers=ann, json={"team": "builder", "input": "And tests.",
                                                                 "thread_id": thread})
        assert later.status_code == 202, later.text
        await _wait(http, later.json()["id"], keys["ann"])

        # Cara's runs go with her account: a new account of the same name sees none of them.
        subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", "cara", "--password-stdin"],
                       input="cara-password-1\n", text=True, env=srv.env, cwd=srv.workdir, check=True, timeout=120)
        cara_key = _cli_key(srv, "cara")
        made = await http.post("/api/runs", headers=_auth(cara_key), json={"team": "music-store", "input": QUESTION})
        await _wait(http, made.json()["id"], cara_key)
        subprocess.run([sys.executable, "-m", "chorus.cli", "users", "remove", "cara"], env=srv.env,
                       cwd=srv.workdir, check=True, timeout=120, capture_output=True)
        subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", "cara", "--password-stdin"],
                       input="cara-password-2\n", text=True, env=srv.env, cwd=srv.workdir, check=True, timeout=120)
        new_key = _cli_key(srv, "cara")
        assert (await http.get("/api/runs", headers=_auth(new_key))).json()["data"] == []
        assert (await http.get(f"/api/runs/{made.json()['id']}", headers=_auth(new_key))).status_code == 404
    engine = sa.create_engine(f"sqlite:///{srv.workdir / 'data' / 'chorus.db'}")
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM chorus_run_events WHERE run_id = :r"),
                            {"r": made.json()["id"]}).scalar()
    engine.dispose()
    assert left == 0


def _cli_key(srv: ChorusServer, user: str) -> str:
    made = subprocess.run([sys.executable, "-m", "chorus.cli", "keys", "create", "--user", user], env=srv.env,
                          cwd=srv.workdir, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


async def test_a_webhook_is_called_only_on_the_allow_list(runs_server: tuple[ChorusServer, dict[str, str]],
                                                          hooks: Hooks) -> None:
    srv, keys = runs_server
    ann = _auth(keys["ann"])
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        refused = await http.post("/api/runs", headers=ann, json={
            "team": "music-store", "input": QUESTION, "webhook": f"http://localhost:{hooks.port}/refused"})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "webhook_not_allowed" and "allow-list" in error["message"]
        made = await http.post("/api/runs", headers=ann, json={
            "team": "music-store", "input": QUESTION, "webhook": f"http://127.0.0.1:{hooks.port}/done"})
        assert made.status_code == 202, made.text
        run = await _wait(http, made.json()["id"], keys["ann"])
        deadline = time.monotonic() + 15
        while not hooks.got and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    assert [path for path, _ in hooks.got] == ["/done"]
    body = hooks.got[0][1]
    assert body["id"] == run["id"] and body["status"] == "completed" and "AC/DC" in body["result"]["content"]
    assert len(await asyncio.to_thread(lambda: [r for r in hooks.got if r[0] == "/refused"])) == 0


async def test_bad_requests_get_clear_answers(runs_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = runs_server
    ann = _auth(keys["ann"])
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        cases = [
            ({}, {"team": "music-store", "input": "hi"}, 401, "missing_api_key"),
            (ann, {"input": "hi"}, 400, "missing_team"),
            (ann, {"team": "music-store"}, 400, "missing_input"),
            (ann, {"team": "music-store", "input": "  "}, 400, "empty_message"),
            (ann, {"team": "no-such-team", "input": "hi"}, 404, "team_not_found"),
            (ann, {"team": "music-store", "input": "x" * 20000}, 413, "request_too_large"),
            (ann, {"team": "music-store", "input": "hi", "webhook": "ftp://127.0.0.1/x"}, 400, "webhook_not_allowed"),
        ]
        for headers, body, status, code in cases:
            answer = await http.post("/api/runs", headers=headers, json=body)
            assert answer.status_code == status, (body, answer.text)
            assert answer.json()["error"]["code"] == code
        bad_json = await http.post("/api/runs", headers=ann | {"content-type": "application/json"}, content=b"{nope")
        assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
        assert (await http.get("/api/runs?status=sleeping", headers=ann)).status_code == 400
        assert (await http.get("/api/runs/run_nope", headers=ann)).status_code == 404
        events = await http.get("/api/runs/run_nope/events", headers=ann)
        assert events.status_code == 404
    assert (await asyncio.to_thread(httpx.get, srv.url + "/project/settings")).status_code < 500  # still serving


# --- interrupted runs go on: a model over HTTP, counted ------------------------------------------

FIRST = "The first member answers briefly."
SECOND_WORDS = [f"second{i} " for i in range(40)]
SECOND = "".join(SECOND_WORDS)


def _duo(workdir: Path) -> dict[str, str]:
    agents = workdir / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / "duo.yaml").write_text("name: duo\ntype: round_robin\nmembers: [assistant, guide]\ndefault: true\n"
                                     "termination:\n  max_messages: 3\n")
    return {"CHORUS_MEMORY": "false", "CHORUS_AGENTS_DIR": str(agents), "CHORUS_MODEL": "openai/fake-model",
            "CHORUS_MODEL_API_KEY": "sk-test", "CHORUS_MODEL_RETRIES": "0", "CHORUS_DEGRADE_TO_OFFLINE": "false"}


async def _start_duo_until_mid_reply(http: httpx.AsyncClient, key: str) -> tuple[str, list[tuple[int, str, Any]]]:
    """Start a run of the duo and read its events (reconnecting each time, as a client would)
    until the second member has streamed a few words: (the run's id, the events read)."""
    made = await http.post("/api/runs", headers=_auth(key), json={"team": "duo", "input": "Go."})
    assert made.status_code == 202, made.text
    run_id = made.json()["id"]
    seen: list[tuple[int, str, dict[str, Any]]] = []
    while not sum(1 for _, kind, e in seen if kind == "token" and e["agent"] == "guide") >= 3:
        more, end = await _events(http, run_id, key, after=seen[-1][0] if seen else None, stop_after=1)
        assert end is None, end
        seen += more
    return run_id, seen


OTHER = "A shorter second reply this time."


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM", "kill -9, and the provider answers otherwise"])
async def test_a_run_interrupted_mid_reply_goes_on_after_the_restart_without_asking_again(
        tmp_path: Path, how: str) -> None:
    from fake_openai import FakeOpenAI, FakeResponse

    workdir = tmp_path / "w"
    add_accounts(workdir / "data", "ann")
    key = make_keys(workdir / "data", ("ann", "ann", None))["ann"]
    again = OTHER if "otherwise" in how else SECOND
    with FakeOpenAI() as fake:
        env = _duo(workdir) | {"CHORUS_MODEL_API_BASE": fake.url}
        fake.queue_text(FIRST, chunk_delay=0.01)
        fake.queue(FakeResponse(text_chunks=SECOND_WORDS, chunk_delay=0.15))  # cut off in the middle
        fake.queue_text(again, chunk_delay=0.01)  # asked again after the restart
        srv = ChorusServer(workdir, env=env).start()
        try:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
                run_id, seen = await _start_duo_until_mid_reply(http, key)
            assert len(fake.requests) == 2
            if how.startswith("kill -9"):
                assert srv.proc is not None
                srv.proc.kill()
                srv.proc.wait(10)
            else:
                srv.stop()  # SIGTERM
        finally:
            srv.stop()
        srv = ChorusServer(workdir, env=env).start()  # the same data, a new process
        try:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
                rest, end = await _events(http, run_id, key, after=seen[-1][0])
                assert end is not None and end["status"] == "completed", (end, srv.output()[-3000:])
                run = (await http.get(f"/api/runs/{run_id}", headers=_auth(key))).json()
        finally:
            srv.stop()
        # The first member's finished call was not made again; the cut-off one was, once.
        assert len(fake.requests) == 3, [r["messages"][-1] for r in fake.requests]
        assert run["attempts"] == 2 and run["result"]["calls_replayed"] == 1
        assert run["result"]["content"] == FIRST + "\n\n" + again  # what an uninterrupted run says
        assert [m["agent"] for m in run["result"]["messages"]] == ["assistant", "guide"]
        events = seen + rest
        assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))  # each once, in order
        assert [(e["agent"], e["content"]) for _, kind, e in events if kind == "message"] == [
            ("assistant", FIRST), ("guide", again)]
        resumed = [e for _, kind, e in events if kind == "notice" and e["code"] == "run_resumed"]
        assert len(resumed) == 1 and "asked for again" in resumed[0]["text"]
        assert [kind for _, kind, _ in events].count("done") == 1
        # The cost ledger has each reply once (a stopped attempt's rows do not count twice).
        engine = sa.create_engine(f"sqlite:///{workdir / 'data' / 'chorus.db'}")
        with engine.connect() as conn:
            agents = sorted(r[0] for r in conn.execute(sa.text("SELECT agent FROM chorus_usage WHERE turn_id = :t"),
                                                       {"t": run["trace"].rsplit("/", 1)[1]}))
        engine.dispose()
        assert agents == ["assistant", "guide"]


# --- two workers on PostgreSQL -----------------------------------------------------------------

@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def _worker(workdir: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "chorus.cli", "worker"], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


async def test_two_workers_on_postgres_one_killed_mid_run_the_other_finishes_it(
        tmp_path: Path, postgres_url: str) -> None:
    from fake_openai import FakeOpenAI, FakeResponse

    workdir = tmp_path / "w"
    with FakeOpenAI() as fake:
        base = {**_duo(workdir), "CHORUS_MODEL_API_BASE": fake.url, "CHORUS_DATABASE_URL": postgres_url,
                "CHORUS_WORKER_DEAD_AFTER": "10"}
        web = ChorusServer(workdir, env=base | {"CHORUS_RUN_CONCURRENCY": "0"})  # takes runs, executes none
        subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", "ann", "--password-stdin"],
                       input="ann-password-123\n", text=True, env=web.env, cwd=workdir.parent, check=True, timeout=120)
        made_key = subprocess.run([sys.executable, "-m", "chorus.cli", "keys", "create", "--user", "ann"],
                                  env=web.env, cwd=workdir.parent, capture_output=True, text=True, timeout=120)
        key = made_key.stdout.strip()
        assert key.startswith("chorus-"), made_key.stderr
        fake.queue_text(FIRST, chunk_delay=0.01)
        fake.queue(FakeResponse(text_chunks=SECOND_WORDS, chunk_delay=0.15))
        fake.queue(FakeResponse(text_chunks=SECOND_WORDS, chunk_delay=0.01))
        web.start()
        worker_env = {**web.env, "CHORUS_RUN_CONCURRENCY": "1"}
        workers = [_worker(workdir, worker_env, "worker-a"), _worker(workdir, worker_env, "worker-b")]
        try:
            async with httpx.AsyncClient(base_url=web.url, timeout=60) as http:
                run_id, seen = await _start_duo_until_mid_reply(http, key)
                owner = next(w for w in workers if _runs_it(w, postgres_url, run_id))
                os.kill(owner.pid, signal.SIGKILL)
                owner.wait(10)
                rest, end = await _events(http, run_id, key, after=seen[-1][0])
                assert end is not None and end["status"] == "completed", end
                run = (await http.get(f"/api/runs/{run_id}", headers=_auth(key))).json()
        finally:
            for proc in workers:
                stop_process(proc)
            web.stop()
        survivor = next(w for w in workers if w is not owner)
        assert run["attempts"] == 2 and run["result"]["content"] == FIRST + "\n\n" + SECOND
        assert len(fake.requests) == 3
        events = seen + rest
        assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
        assert [e["agent"] for _, kind, e in events if kind == "message"] == ["assistant", "guide"]
        assert _runs_it(survivor, postgres_url, run_id)


def _runs_it(proc: subprocess.Popen[bytes], url: str, run_id: str) -> bool:
    """Whether ``proc`` is the worker the run is (or was last) on."""
    engine = sa.create_engine(url.replace("+asyncpg", "+psycopg"))
    try:
        with engine.connect() as conn:
            worker = conn.execute(sa.text("SELECT worker FROM chorus_runs WHERE id = :r"), {"r": run_id}).scalar()
    finally:
        engine.dispose()
    return bool(worker) and f"-{proc.pid}-" in str(worker)


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
async def test_a_run_waiting_for_approval_waits_again_after_a_restart(tmp_path: Path, how: str) -> None:
    """The server stops while a run's tool waits for approval: the run is taken up again after the
    restart, waits for the same request (never "not run"), and the answer given then places the order
    once; the model calls made before the restart are not made again."""
    from fake_openai import FakeOpenAI

    workdir = tmp_path / "w"
    add_accounts(workdir / "data", "ann")
    key = make_keys(workdir / "data", ("ann", "ann", None))["ann"]
    agents = workdir / "agents"
    agents.mkdir(parents=True)
    (agents / "shop.yaml").write_text("name: shop\ntype: round_robin\nmembers: [invoices]\ndefault: true\n"
                                      "termination:\n  max_messages: 2\n")
    with FakeOpenAI() as fake:
        env = {"CHORUS_MEMORY": "false", "CHORUS_AGENTS_DIR": str(agents), "CHORUS_MODEL": "openai/fake-model",
               "CHORUS_MODEL_API_KEY": "sk-test", "CHORUS_MODEL_API_BASE": fake.url, "CHORUS_MODEL_RETRIES": "0",
               "CHORUS_DEGRADE_TO_OFFLINE": "false"}
        fake.queue_tool_call("verify_customer", {"identifier": "ana.souza@example.com"}).queue_text("Verified.")
        fake.queue_tool_call("order_track", {"title": "Black Dog"}).queue_text("Your order is placed.")
        srv = ChorusServer(workdir, env=env).start()
        try:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
                made = await http.post("/api/runs", headers=_auth(key),
                                       json={"team": "shop", "input": "My email is ana.souza@example.com"})
                first = await _wait(http, made.json()["id"], key)
                assert first["status"] == "completed", first
                made = await http.post("/api/runs", headers=_auth(key), json={
                    "team": "shop", "input": "Buy the song Black Dog", "thread_id": first["thread_id"]})
                run_id = made.json()["id"]
                pending = await _pending(http, run_id, key)
            asked = len(fake.requests)
            if how == "kill -9":
                assert srv.proc is not None
                srv.proc.kill()
                srv.proc.wait(10)
        finally:
            srv.stop()
        srv = ChorusServer(workdir, env=env).start()
        try:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
                again = await _pending(http, run_id, key)
                assert [a["id"] for a in again] == [a["id"] for a in pending]  # the same request, still open
                answered = await http.post(f"/api/runs/{run_id}/approvals/{again[0]['id']}", headers=_auth(key),
                                           json={"approve": True})
                assert answered.status_code == 200, answered.text
                done = await _wait(http, run_id, key, timeout=90)
                assert done["status"] == "completed", (done, srv.output()[-3000:])
                assert done["result"]["content"] == "Your order is placed."
        finally:
            srv.stop()
        # The order tool ran once, after the approval: its result went to the model once.
        results = [m for r in fake.requests for m in r["messages"] if m.get("role") == "tool"]
        placed = [m for m in results if "Order **1** is placed" in str(m.get("content"))]
        assert placed and all("Not run" not in str(m.get("content")) for m in results)
        assert asked == 3  # verify, its answer, the order's call: nothing after them before the restart
        assert sum(1 for r in fake.requests if r["messages"][-1].get("role") == "tool"
                   and "Order **1**" in str(r["messages"][-1].get("content"))) == 1


async def _pending(http: httpx.AsyncClient, run_id: str, key: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = await http.get(f"/api/runs/{run_id}/approvals?status=pending", headers=_auth(key))
        assert listed.status_code == 200, listed.text
        if listed.json()["data"]:
            return list(listed.json()["data"])
        await asyncio.sleep(0.5)
    raise AssertionError(f"run {run_id} never asked for approval")
