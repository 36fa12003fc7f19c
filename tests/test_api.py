"""The OpenAI-compatible API, driven by the official ``openai`` client (and plain HTTP for malformed
input) against a real ``chorus run``: keys, models, streamed and whole answers with agent names,
errors in OpenAI's shape, stored conversations that the page opens, and a second user's keys."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from chat_client import login_cookie, saved_state
from conftest import ChorusServer
from test_quota import PASSWORD, add_accounts

from chorus.store import make_engine
from chorus.store.db import run_with_engine
from chorus.store.keys import create_key, revoke_key
from chorus.store.schema import api_keys

QUESTION = "Which albums does AC/DC have?"


def make_keys(home: Path, *specs: tuple[str, str, list[str] | None]) -> dict[str, str]:
    """Keys made as `chorus keys create` makes them, by label: (label, user, teams)."""
    url = f"sqlite+aiosqlite:///{home.resolve() / 'chorus.db'}"

    async def make(engine: Any) -> dict[str, str]:
        return {label: (await create_key(engine, user, teams=teams))[0] for label, user, teams in specs}

    return dict(run_with_engine(url, make))


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChorusServer, dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("api")
    add_accounts(workdir / "data", "ann", "bob")
    keys = make_keys(workdir / "data", ("ann", "ann", None), ("ann-music", "ann", ["music-store"]),
                     ("ann-revoked", "ann", None), ("ann-expired", "ann", None), ("bob", "bob", None),
                     ("ann-limited", "ann", None), ("ann-busy", "ann", None))
    url = f"sqlite+aiosqlite:///{(workdir / 'data' / 'chorus.db').resolve()}"

    async def age(engine: Any) -> None:
        await revoke_key(engine, keys["ann-revoked"][:14])
        async with engine.begin() as conn:  # a key that expired an hour ago
            await conn.execute(sa.update(api_keys).where(api_keys.c.prefix == keys["ann-expired"][:14])
                               .values(expires_at=datetime.now(UTC) - timedelta(hours=1)))

    run_with_engine(url, age)
    srv = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0.01", "CHORUS_API_RATE_LIMIT": "40/minute",
                                     "CHORUS_API_MAX_BODY_KB": "64"})
    srv.start()
    yield srv, keys
    srv.stop()


_open: list[openai.AsyncOpenAI] = []


def client(srv: ChorusServer, key: str) -> openai.AsyncOpenAI:
    # No retries: the test sees each answer as the server gave it.
    made = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=60)
    _open.append(made)
    return made


@pytest.fixture(autouse=True)
async def _close_clients() -> Any:
    yield
    while _open:
        await _open.pop().close()


async def test_models_are_the_teams_a_key_may_use(api_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = api_server
    every = [m.id for m in (await client(srv, keys["ann"]).models.list()).data]
    assert "chorus/music-store" in every and "chorus/chorus" in every and len(every) >= 5
    only = [m.id for m in (await client(srv, keys["ann-music"]).models.list()).data]
    assert only == ["chorus/music-store"]


async def test_a_whole_answer_names_its_agents_and_usage(api_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = api_server
    done = await client(srv, keys["ann"]).chat.completions.create(
        model="chorus/music-store", messages=[{"role": "user", "content": QUESTION}])
    text = done.choices[0].message.content or ""
    assert "For Those About To Rock" in text and "Let There Be Rock" in text
    assert done.choices[0].finish_reason == "stop" and done.model == "chorus/music-store"
    extra = done.model_extra or {}
    assert extra["agents"] == ["catalog"] and extra["messages"][0]["content"] == text
    assert done.usage is not None and done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    assert extra["chorus"]["thread_id"] is None  # nothing stored unless asked
    # The tool the catalog called is a step, never text.
    assert "albums_by_artist" not in text and "FunctionCall" not in text and '"artist"' not in text


async def test_a_stream_names_each_agent_ends_with_usage_and_agrees_with_the_whole_answer(
        api_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = api_server
    api = client(srv, keys["ann"])
    whole = await api.chat.completions.create(model="chorus/music-store",
                                              messages=[{"role": "user", "content": QUESTION}])
    stream = await api.chat.completions.create(
        model="chorus/music-store", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    pieces = [(c.model_extra or {}).get("agent") for c in chunks if c.choices and c.choices[0].delta.content]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(pieces) > 5 and set(pieces) == {"catalog"}  # streamed word by word, each naming its agent
    assert text == whole.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert (finals[0].model_extra or {})["chorus"]["agents"] == ["catalog"]
    assert not chunks[-1].choices and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0

    prefixed = await api.chat.completions.create(
        model="chorus/music-store", messages=[{"role": "user", "content": QUESTION}], stream=True,
        extra_body={"agent_names": "prefix"})
    text = "".join([c.choices[0].delta.content or "" async for c in prefixed if c.choices])
    assert text.startswith("**catalog:** ") and "Let There Be Rock" in text


async def test_errors_come_in_openais_shape(api_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = api_server
    ask = [{"role": "user", "content": QUESTION}]
    for key, reason in ((keys["ann-revoked"], "revoked"), (keys["ann-expired"], "expired"),
                        ("chorus-" + "x" * 43, "Unknown API key"), ("sk-not-ours", "not a Chorus API key")):
        with pytest.raises(openai.AuthenticationError, match=reason):
            await client(srv, key).chat.completions.create(model="chorus/music-store", messages=ask)
    with pytest.raises(openai.NotFoundError, match="does not exist") as unknown:
        await client(srv, keys["ann"]).chat.completions.create(model="chorus/no-such-team", messages=ask)
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # a team the key may not use looks like one that does not exist
        await client(srv, keys["ann-music"]).chat.completions.create(model="chorus/chorus", messages=ask)
    with pytest.raises(openai.BadRequestError, match="empty"):
        await client(srv, keys["ann"]).chat.completions.create(model="chorus/music-store",
                                                                messages=[{"role": "user", "content": "  "}])
    with pytest.raises(openai.BadRequestError, match="20,000"):
        await client(srv, keys["ann"]).chat.completions.create(model="chorus/music-store",
                                                                messages=[{"role": "user", "content": "a" * 20_001}])

    async with httpx.AsyncClient(base_url=srv.url, timeout=30,
                                 headers={"Authorization": f"Bearer {keys['ann']}"}) as http:
        async def post(body: Any, **kw: Any) -> httpx.Response:
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
            return await http.post("/v1/chat/completions", content=data,
                                   headers={"Content-Type": "application/json", **kw.get("headers", {})})

        for body, status, words in (
            ("{not json", 400, "not valid JSON"),
            ("[1, 2]", 400, "JSON object"),
            ({"messages": ask}, 400, "'model' is required"),
            ({"model": "chorus/music-store"}, 400, "'messages' is required"),
            ({"model": "chorus/music-store", "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
            ({"model": "chorus/music-store", "messages": [*ask, {"role": "assistant", "content": "x"}]}, 400,
             "last message"),
            ({"model": "chorus/music-store", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:,"}}]}]}, 400, "only text"),
            ({"model": "chorus/music-store", "messages": ask, "stream": "yes"}, 400, "'stream'"),
            ({"model": "chorus/music-store", "messages": ask, "agent_names": "shout"}, 400, "agent_names"),
            ({"model": "chorus/music-store", "messages": [{"role": "user", "content": "a" * 70_000}]}, 413,
             "limit"),
        ):
            answer = await post(body)
            assert answer.status_code == status, (body, answer.text)
            error = answer.json()["error"]
            assert words in error["message"] and error["type"] == "invalid_request_error", error
        form = await http.post("/v1/chat/completions", content=b"model=x", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
    # The server is none the worse.
    done = await client(srv, keys["ann"]).chat.completions.create(model="chorus/music-store", messages=ask)
    assert "Let There Be Rock" in (done.choices[0].message.content or "")


async def test_a_key_over_its_rate_limit_is_told_when_to_come_back(
        api_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = api_server
    api = client(srv, keys["ann-limited"])
    for _ in range(40):
        await api.models.list()
    with pytest.raises(openai.RateLimitError) as refused:
        await api.models.list()
    retry = int(refused.value.response.headers["retry-after"])
    assert 1 <= retry <= 60 and "40 per 1 minute" in str(refused.value)
    assert [m.id for m in (await client(srv, keys["ann-music"]).models.list()).data]  # other keys are not affected


async def test_a_stored_conversation_opens_in_the_page_and_goes_on_in_both(
        api_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = api_server
    api = client(srv, keys["ann"])
    first = await api.chat.completions.with_raw_response.create(
        model="chorus/music-store", messages=[{"role": "user", "content": QUESTION}],
        extra_body={"chorus_thread_id": "new"})
    thread = first.headers["x-chorus-thread-id"]
    assert (first.parse().model_extra or {})["chorus"]["thread_id"] == thread
    second = await api.chat.completions.create(
        model="chorus/music-store", messages=[{"role": "user", "content": "Which albums does Queen have?"}],
        extra_headers={"X-Chorus-Thread-Id": thread})
    assert "A Night at the Opera" in (second.choices[0].message.content or "")
    state = await saved_state(srv, thread, "ann")
    assert "AC/DC" in state and "Queen" in state  # the team kept both turns

    # The page opens it from ann's history, with both turns, and goes on.
    page = await _reopen(srv, "ann", thread)
    try:
        users = [s["output"] for s in page.resumed[0]["steps"] if s.get("type") == "user_message"]
        replies = [s for s in page.resumed[0]["steps"] if s.get("type") == "assistant_message"]
        assert users == [QUESTION, "Which albums does Queen have?"] and {r["name"] for r in replies} == {"catalog"}
        metadata = [json.loads(r["metadata"]) if isinstance(r["metadata"], str) else r["metadata"] for r in replies]
        assert all(m.get("turn_id") for m in metadata)  # thumbs on them reach the trace
        await page.answer_to("Which albums does Led Zeppelin have?", "Physical Graffiti")
    finally:
        await page.sio.disconnect()
    # ...and the API goes on after the page's turn: the team remembers all three.
    third = await api.chat.completions.create(
        model="chorus/music-store", messages=[{"role": "user", "content": "Which albums does Metallica have?"}],
        extra_body={"chorus_thread_id": thread})
    assert third.choices[0].message.content
    state = await saved_state(srv, thread, "ann")
    assert all(name in state for name in ("AC/DC", "Queen", "Led Zeppelin", "Metallica"))

    # Another team's model cannot continue it.
    with pytest.raises(openai.ConflictError, match="music-store"):
        await api.chat.completions.create(model="chorus/chorus", messages=[{"role": "user", "content": "hi"}],
                                          extra_body={"chorus_thread_id": thread})


async def test_a_second_user_with_the_first_users_thread_gets_nothing(
        api_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = api_server
    first = await client(srv, keys["ann"]).chat.completions.create(
        model="chorus/music-store", messages=[{"role": "user", "content": "My secret word is marmalade."}],
        extra_body={"chorus_thread_id": "new"})
    thread = (first.model_extra or {})["chorus"]["thread_id"]
    for ask in ({"extra_body": {"chorus_thread_id": thread}}, {"extra_headers": {"X-Chorus-Thread-Id": thread}}):
        with pytest.raises(openai.NotFoundError, match="No conversation"):
            await client(srv, keys["bob"]).chat.completions.create(
                model="chorus/music-store", messages=[{"role": "user", "content": "What is the secret word?"}],
                **ask)  # type: ignore[arg-type]
    db = srv.workdir / "data" / "chorus.db"
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            outputs = [r[0] for r in await conn.execute(sa.text(
                'SELECT output FROM steps WHERE "threadId" = :t'), {"t": thread})]
            owners = {r[0] for r in await conn.execute(sa.text(
                'SELECT "userIdentifier" FROM threads WHERE id = :t'), {"t": thread})}
    finally:
        await engine.dispose()
    assert owners == {"ann"} and not any("secret word?" in (o or "") for o in outputs)


async def test_two_requests_on_one_conversation_at_once_one_waits_its_turn(
        api_server: tuple[ChorusServer, dict[str, str]]) -> None:
    srv, keys = api_server
    api = client(srv, keys["ann-busy"])
    first = await api.chat.completions.create(model="chorus/music-store", messages=[
        {"role": "user", "content": QUESTION}], extra_body={"chorus_thread_id": "new"})
    thread = (first.model_extra or {})["chorus"]["thread_id"]
    results = await asyncio.gather(*(api.chat.completions.create(
        model="chorus/music-store", messages=[{"role": "user", "content": "Which albums does Queen have?"}],
        extra_body={"chorus_thread_id": thread}) for _ in range(2)), return_exceptions=True)
    answered = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, openai.ConflictError)]
    assert len(answered) == 1 and len(refused) == 1, results
    assert "still answering" in str(refused[0])


def test_keys_are_printed_once_and_kept_only_as_hashes(api_server: tuple[ChorusServer, dict[str, str]],
                                                         tmp_path: Path) -> None:
    srv, keys = api_server
    env = {**srv.env}
    made = subprocess.run([sys.executable, "-m", "chorus.cli", "keys", "create", "--user", "ann", "--team",
                           "music-store", "--expires", "30d", "--name", "laptop"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=srv.workdir)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("chorus-") and len(key) > 40 and "not shown again" in made.stderr
    listed = subprocess.run([sys.executable, "-m", "chorus.cli", "keys", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=120, cwd=srv.workdir)
    rows = json.loads(listed.stdout)
    mine = next(r for r in rows if r["name"] == "laptop")
    assert mine["teams"] == ["music-store"] and mine["state"] == "active" and key not in listed.stdout
    assert {r["state"] for r in rows} >= {"active", "revoked", "expired"}
    bad = subprocess.run([sys.executable, "-m", "chorus.cli", "keys", "create", "--user", "nobody"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=srv.workdir)
    assert bad.returncode != 0 and "no user 'nobody'" in bad.stderr
    revoked = subprocess.run([sys.executable, "-m", "chorus.cli", "keys", "revoke", mine["id"]], env=env,
                             capture_output=True, text=True, timeout=120, cwd=srv.workdir)
    assert revoked.returncode == 0 and "Revoked" in revoked.stdout
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0).models.list()
    # No key used in this module is in the database, the traces or the log in the clear.
    for path in (srv.workdir / "data").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for label, secret in [*keys.items(), ("laptop", key)]:
                assert secret.encode() not in data, f"the {label} key is in {path}"
    assert not any(secret in srv.output() for secret in keys.values())


async def _reopen(srv: ChorusServer, user: str, thread: str) -> Any:
    from test_shutdown import Reopening, _until

    page = await Reopening(srv, cookie=login_cookie(srv.url, user, PASSWORD), thread_id=thread).connect()
    await _until("the reopened conversation", lambda: page.resumed)
    return page


# --- a model over HTTP: a fake OpenAI-compatible provider, paced like a real one ----------------

@pytest.fixture(scope="module")
def http_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChorusServer, str, Any]]:
    from fake_openai import FakeOpenAI, FakeResponse

    workdir = tmp_path_factory.mktemp("api-http")
    agents = workdir / "agents"
    agents.mkdir()
    (agents / "solo.yaml").write_text("name: solo\ntype: round_robin\nmembers: [assistant]\ndefault: true\n"
                                      "termination:\n  max_messages: 2\n")
    add_accounts(workdir / "data", "ann")
    key = make_keys(workdir / "data", ("ann", "ann", None))["ann"]
    words = [f"word{i} " for i in range(30)]
    with FakeOpenAI(default=FakeResponse(text_chunks=words, chunk_delay=0.02)) as fake:
        srv = ChorusServer(workdir, env={
            "CHORUS_MEMORY": "false", "CHORUS_AGENTS_DIR": str(agents), "CHORUS_MODEL": "openai/fake-model",
            "CHORUS_MODEL_API_BASE": fake.url, "CHORUS_MODEL_API_KEY": "sk-test"})
        srv.start()
        try:
            yield srv, key, fake
        finally:
            srv.stop()


async def test_over_http_the_stream_arrives_as_the_provider_sends_it(
        http_model: tuple[ChorusServer, str, Any]) -> None:
    import time

    srv, key, _fake = http_model
    stream = await client(srv, key).chat.completions.create(
        model="chorus/solo", messages=[{"role": "user", "content": "Tell me something."}], stream=True,
        stream_options={"include_usage": True})
    arrivals: list[tuple[float, str]] = []
    usage = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
        if chunk.usage is not None:
            usage = chunk.usage
    text = "".join(piece for _, piece in arrivals)
    assert text.split() == [f"word{i}" for i in range(30)]
    assert arrivals[-1][0] - arrivals[0][0] > 0.3  # streamed as paced (30 x 20 ms), not all at the end
    assert usage is not None and usage.completion_tokens > 0


async def test_over_http_the_whole_conversation_reaches_the_model_and_tool_calls_stay_out_of_the_text(
        http_model: tuple[ChorusServer, str, Any]) -> None:
    srv, key, fake = http_model
    fake.requests.clear()
    fake.queue_tool_call("current_time", {"timezone": "Asia/Tokyo"})
    fake.queue_text("Late evening in Tokyo, Zebulon.")
    done = await client(srv, key).chat.completions.create(model="chorus/solo", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Zebulon."},
        {"role": "assistant", "content": "Nice to meet you, Zebulon."},
        {"role": "user", "content": [{"type": "text", "text": "What time is it in Tokyo?"}]},
    ])
    assert done.choices[0].message.content == "Late evening in Tokyo, Zebulon."
    sent = json.dumps(fake.requests[0]["messages"])
    assert "My name is Zebulon." in sent and "Nice to meet you, Zebulon." in sent and "Be brief." in sent
    assert "It is " in json.dumps(fake.requests[-1]["messages"])  # the tool ran; its result went to the model


async def test_over_http_a_client_that_leaves_mid_stream_stops_the_turn_and_the_server_goes_on(
        http_model: tuple[ChorusServer, str, Any]) -> None:
    from fake_openai import FakeResponse

    srv, key, fake = http_model
    fake.queue(FakeResponse(text_chunks=[f"slow{i} " for i in range(200)], chunk_delay=0.05))
    before = fake.disconnects
    body = {"model": "chorus/solo", "stream": True, "messages": [{"role": "user", "content": "Talk for a long time."}]}
    async with (httpx.AsyncClient(timeout=30) as http,
                http.stream("POST", srv.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json=body) as r):
        seen = 0
        async for line in r.aiter_lines():
            seen += line.startswith("data: ")
            if seen >= 5:
                break  # and hang up
    deadline = asyncio.get_running_loop().time() + 15
    while fake.disconnects == before and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    assert fake.disconnects > before  # the model call was cut off, not left to run to the end
    done = await client(srv, key).chat.completions.create(model="chorus/solo", messages=[
        {"role": "user", "content": "Are you still there?"}])
    assert "word0" in (done.choices[0].message.content or "")


async def test_over_http_a_stream_cut_by_a_restart_keeps_its_conversation_which_goes_on_after_it(
        tmp_path: Path) -> None:
    """SIGTERM in the middle of a streamed answer: the client's stream ends cleanly (stop reason
    ``stopped``), the stored conversation keeps the user's message, and after the restart the same
    thread goes on, the team remembering the turns before (a stopped turn is rewound, as on the page)."""
    from fake_openai import FakeOpenAI, FakeResponse

    workdir = tmp_path / "w"
    agents = workdir / "agents"
    agents.mkdir(parents=True)
    (agents / "solo.yaml").write_text("name: solo\ntype: round_robin\nmembers: [assistant]\ndefault: true\n"
                                      "termination:\n  max_messages: 2\n")
    add_accounts(workdir / "data", "ann")
    key = make_keys(workdir / "data", ("ann", "ann", None))["ann"]
    with FakeOpenAI() as fake:
        env = {"CHORUS_MEMORY": "false", "CHORUS_AGENTS_DIR": str(agents), "CHORUS_MODEL": "openai/fake-model",
               "CHORUS_MODEL_API_BASE": fake.url, "CHORUS_MODEL_API_KEY": "sk-test"}
        fake.queue_text("Nice to meet you, Zebulon.")
        fake.queue(FakeResponse(text_chunks=[f"long{i} " for i in range(100)], chunk_delay=0.1))
        srv = ChorusServer(workdir, env=env).start()
        pieces: list[str] = []
        final: dict[str, Any] = {}
        try:
            met = await client(srv, key).chat.completions.create(
                model="chorus/solo", extra_body={"chorus_thread_id": "new"},
                messages=[{"role": "user", "content": "My name is Zebulon."}])
            thread = (met.model_extra or {})["chorus"]["thread_id"]
            stream = await client(srv, key).chat.completions.create(
                model="chorus/solo", stream=True, extra_body={"chorus_thread_id": thread},
                messages=[{"role": "user", "content": "Talk for a while."}])
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                    if len(pieces) == 5:
                        assert srv.proc is not None
                        srv.proc.terminate()  # SIGTERM, mid-answer
                extra = chunk.model_extra or {}
                if "chorus" in extra:
                    final = extra["chorus"]
        finally:
            srv.stop()
        assert final.get("stop_reason") == "stopped" and final["thread_id"] == thread, final
        assert 5 <= len(pieces) < 100
        engine = sa.create_engine(f"sqlite:///{workdir / 'data' / 'chorus.db'}")
        with engine.connect() as conn:
            said = [r[0] for r in conn.execute(sa.text(
                "SELECT output FROM steps WHERE \"threadId\" = :t AND type = 'user_message' ORDER BY \"createdAt\""),
                {"t": thread})]
        engine.dispose()
        assert said == ["My name is Zebulon.", "Talk for a while."]  # the cut-off turn's message is kept
        srv = ChorusServer(workdir, env=env).start()
        try:
            fake.queue_text("You told me your name: Zebulon.")
            after = await client(srv, key).chat.completions.create(
                model="chorus/solo", extra_body={"chorus_thread_id": thread},
                messages=[{"role": "user", "content": "What is my name?"}])
            assert after.choices[0].message.content == "You told me your name: Zebulon."
            sent = json.dumps(fake.requests[-1]["messages"])
            assert "My name is Zebulon." in sent  # the team remembers the conversation after the restart
        finally:
            srv.stop()
