"""MCP servers as tool sources, tried with real MCP servers (tests/mcp_servers.py, written with the
``mcp`` SDK) over stdio and streamable HTTP, and a model over HTTP (the fake OpenAI server, through
litellm) that calls their tools: allow-lists, ``${VAR}`` secrets, timeouts, a server that crashes
in the middle of a call or never starts, ``chorus teams``, and the units team in ``agents/`` on a
running server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chat_client import ChatClient
from conftest import ChorusServer
from fake_openai import FakeOpenAI
from workers import free_port

from chorus import AgentSpec, ToolSpec, hookimpl
from chorus.mcp.hub import RETRY_START_AFTER_S
from chorus.teams.spec import load_teams
from chorus.testing import ChorusFactory, NoticeEvent, ToolResultEvent, events_of, replies, run

SERVER = Path(__file__).with_name("mcp_servers.py")


def local_time(city: str) -> str:
    """The time in a city (the team's own tool, beside the MCP server's)."""
    return f"It is noon in {city}."


class Helper:
    @hookimpl
    def chorus_register_tools(self) -> list[ToolSpec]:
        return [ToolSpec(local_time)]

    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name="helper", description="Helps with sums and times.", tools=("local_time",))]


def stdio(**extra: Any) -> dict[str, Any]:
    return {"command": "python", "args": [str(SERVER), "stdio"], **extra}


def team(**servers: dict[str, Any]) -> dict[str, Any]:
    return {"name": "tools", "type": "round_robin", "members": ["helper"], "termination": {"max_messages": 2},
            "mcp_servers": servers, "default": True}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def over_http(make_chorus: ChorusFactory, fake: FakeOpenAI, *teams: dict[str, Any], **settings: Any) -> Any:
    return make_chorus(plugins=[Helper()], model="openai/fake-model", model_api_base=fake.url,
                       model_api_key="sk-test", teams=list(teams), **settings)


def results(events: list[Any]) -> list[ToolResultEvent]:
    return events_of(events, ToolResultEvent)


def offered(fake: FakeOpenAI, index: int = 0) -> set[str]:
    return {t["function"]["name"] for t in fake.requests[index].get("tools", [])}


async def test_a_stdio_servers_allowed_tools_join_the_team_and_a_model_calls_them(
        make_chorus: ChorusFactory, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_TEST_GREETING", "hello from the environment")
    chorus = over_http(make_chorus, fake, team(calc=stdio(tools=["add", "whoami", "crash"],
                                                          env={"GREETING": "${MCP_TEST_GREETING}"})))
    try:
        fake.queue_tool_call("calc__add", {"a": 2, "b": 40}).queue_text("The sum is 42.")
        events = await run(chorus, "What is 2 + 40?")
        # The allow-list: the server's other tools are never offered; the team's own tool still is.
        assert offered(fake) == {"calc__add", "calc__whoami", "calc__crash", "local_time"}
        [result] = results(events)
        assert result.name == "calc__add" and "2 + 40 = 42" in result.result and not result.is_error
        assert [r.content for r in replies(events)][-1] == "The sum is 42."
        # The model saw the tool's result, and the description says where the tool comes from.
        assert "2 + 40 = 42" in json.dumps(fake.requests[1]["messages"])
        described = {t["function"]["name"]: t["function"]["description"] for t in fake.requests[0]["tools"]}
        assert described["calc__add"].startswith("Add two whole numbers") and "'calc'" in described["calc__add"]

        # ${VAR} in env comes from Chorus's environment, not the file.
        fake.queue_tool_call("calc__whoami", {}).queue_text("ok")
        [result] = results(await run(chorus, "Who am I to the server?"))
        assert "greeting: hello from the environment" in result.result
        [status] = [s.status() for s in chorus.mcp.sources(chorus.team("tools"))]
        assert status.state == "ready" and status.tools == ("add", "whoami", "crash") and status.calls == 2
    finally:
        await chorus.mcp.close()


async def test_a_server_that_crashes_mid_call_is_reported_and_started_again_for_the_next_call(
        make_chorus: ChorusFactory, fake: FakeOpenAI) -> None:
    chorus = over_http(make_chorus, fake, team(calc=stdio()))
    try:
        fake.queue_tool_call("calc__add", {"a": 1, "b": 1}).queue_text("two")
        [first] = results(await run(chorus, "1 + 1?"))
        pid = first.result.rsplit("pid ", 1)[1]

        fake.queue_tool_call("calc__crash", {}).queue_text("The tool server stopped; I could not finish.")
        events = await run(chorus, "Crash it")
        [crashed] = results(events)
        assert crashed.is_error and "the MCP server 'calc' stopped while running crash" in crashed.result
        assert replies(events)[-1].content == "The tool server stopped; I could not finish."  # the turn went on
        assert any("MCP server 'calc': stopped during a call to crash" in p for p in chorus.problems())

        # The next call starts it again (a new process), and the problem is gone.
        fake.queue_tool_call("calc__add", {"a": 2, "b": 2}).queue_text("four")
        [again] = results(await run(chorus, "2 + 2?"))
        assert not again.is_error and "2 + 2 = 4" in again.result and again.result.rsplit("pid ", 1)[1] != pid
        assert not chorus.problems()

        # A call that takes longer than the server's timeout is given up, and the agent is told.
        slow = over_http(make_chorus, fake, team(calc=stdio(timeout=1)))
        fake.queue_tool_call("calc__slow", {"seconds": 20}).queue_text("too slow")
        started = time.monotonic()
        [late] = results(await run(slow, "Take your time"))
        assert late.is_error and "did not answer within 1 s" in late.result
        assert time.monotonic() - started < 15
        fake.queue_tool_call("calc__add", {"a": 3, "b": 3}).queue_text("six")
        assert "3 + 3 = 6" in results(await run(slow, "3 + 3?"))[0].result
        await slow.mcp.close()
    finally:
        await chorus.mcp.close()


@pytest.fixture
def http_mcp() -> Iterator[tuple[str, Any]]:
    """The test MCP server over streamable HTTP, in its own process; the second item restarts it."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, str(SERVER), "http", str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return proc
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the MCP test server did not start")

    start()
    yield f"http://127.0.0.1:{port}/mcp", start
    for proc in procs:
        proc.kill()
        proc.wait(10)


async def test_an_http_server_gets_its_headers_and_one_that_dies_mid_call_leaves_the_team_its_other_tools(
        make_chorus: ChorusFactory, fake: FakeOpenAI, http_mcp: tuple[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, restart = http_mcp
    monkeypatch.setenv("MCP_TEST_TOKEN", "tok-123")
    chorus = over_http(make_chorus, fake, team(remote={"url": url, "timeout": 3,
                                                      "headers": {"Authorization": "Bearer ${MCP_TEST_TOKEN}"}}))
    try:
        fake.queue_tool_call("remote__whoami", {}).queue_text("ok")
        [who] = results(await run(chorus, "Who am I?"))
        assert "authorization: Bearer tok-123" in who.result
        assert "remote__add" in offered(fake)

        # The server dies while a call runs: the call is given up within its timeout, the agent is told.
        fake.queue_tool_call("remote__crash", {}).queue_text("The remote tools are down.")
        started = time.monotonic()
        events = await run(chorus, "Crash the remote server")
        [lost] = results(events)
        assert lost.is_error and "MCP server 'remote'" in lost.result
        assert time.monotonic() - started < 20
        assert replies(events)[-1].content == "The remote tools are down."

        # The team keeps its other tools while the server is down...
        fake.reset()
        fake.queue_tool_call("local_time", {"city": "Oslo"}).queue_text("Noon in Oslo.")
        events = await run(chorus, "Time in Oslo?")
        assert results(events)[0].result == "It is noon in Oslo." and "remote__add" in offered(fake)
        # ...and the remote tools work again once the server is back.
        restart()
        time.sleep(RETRY_START_AFTER_S)  # it failed to start a moment ago: it is tried again after this
        fake.queue_tool_call("remote__add", {"a": 5, "b": 6}).queue_text("eleven")
        assert "5 + 6 = 11" in results(await run(chorus, "5 + 6?"))[0].result
    finally:
        await chorus.mcp.close()


async def test_a_server_that_cannot_start_is_a_notice_and_the_team_answers_with_its_other_tools(
        make_chorus: ChorusFactory, fake: FakeOpenAI) -> None:
    broken = {"command": "python", "args": ["-c", "import sys; sys.exit('no such server')"], "start_timeout": 10}
    chorus = over_http(make_chorus, fake, team(broken=broken))
    try:
        fake.queue_tool_call("local_time", {"city": "Lima"}).queue_text("Noon in Lima.")
        session_events = await run(chorus, "Time in Lima?")
        assert results(session_events)[0].result == "It is noon in Lima."
        assert offered(fake) == {"local_time"}
        assert any(p.startswith("MCP server 'broken': failed to start") for p in chorus.problems())
        session = chorus.open_session("tools")
        notices = [n for n in session.notices() if isinstance(n, NoticeEvent) and n.code == "plugin_problem"]
        assert notices, "the page's banner says something failed to load"
        assert any("MCP server 'broken' failed to start" in p and "goes on without its tools" in p
                   for p in session.built.problems)  # type: ignore[union-attr]
    finally:
        await chorus.mcp.close()


def test_bad_server_entries_are_refused_with_their_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("name: good\nmembers: [helper]\n")
    (tmp_path / "both.yaml").write_text("name: both\nmembers: [helper]\nmcp_servers:\n"
                                        "  x: {command: a, url: 'http://b'}\n")
    (tmp_path / "named.yaml").write_text("name: named\nmembers: [helper]\nmcp_servers:\n  Bad-Name: {command: a}\n")
    catalog = load_teams(tmp_path)
    assert set(catalog.teams) == {"good"}
    errors = sorted(catalog.errors)
    assert errors[0].startswith(f"{tmp_path / 'both.yaml'}:3: ") and "either 'command' (stdio) or 'url'" in errors[0]
    assert errors[1].startswith(f"{tmp_path / 'named.yaml'}") and "MCP server name 'Bad-Name'" in errors[1]


def test_chorus_teams_shows_each_servers_tools_and_state(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    shared = tmp_path / "mcp.yaml"
    shared.write_text(yaml.safe_dump({"calc": stdio(tools=["add", "shout"])}))
    (agents / "tools.yaml").write_text(yaml.safe_dump({
        "name": "tools", "members": ["assistant"], "default": True,
        "mcp_servers": {"broken": {"command": "python", "args": ["-c", "raise SystemExit(4)"]}}}))
    env = {**_env(), "CHORUS_AGENTS_DIR": str(agents), "CHORUS_HOME": str(tmp_path / "data"),
           "CHORUS_MCP_SERVERS": str(shared), "CHORUS_PLUGINS": "chorus"}
    listed = subprocess.run([sys.executable, "-m", "chorus.cli", "teams", "--json"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=True)
    [row] = json.loads(listed.stdout)["teams"]
    servers = {s["name"]: s for s in row["mcp_servers"]}
    assert servers["calc"]["state"] == "ready" and servers["calc"]["tools"] == ["add", "shout"]
    assert servers["broken"]["state"] == "failed" and "failed to start" in servers["broken"]["error"]
    text = subprocess.run([sys.executable, "-m", "chorus.cli", "teams"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=True).stdout
    assert "MCP server calc (stdio): ready" in text and "tools: add, shout" in text
    assert "MCP server broken (stdio): failed" in text


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CHORUS_")}


async def test_the_units_team_in_agents_answers_with_its_mcp_servers_tools_on_a_running_server(
        server: ChorusServer) -> None:
    client = ChatClient(server)
    client.chat_profile = "Units"
    await client.connect()
    try:
        await client.send("Convert 10 km to miles")
        step = await client.wait_for(lambda m: m.get("type") == "tool" and "10 km = 6.21 miles" in
                                     (m.get("output") or ""), timeout=60)
        assert "units__km_to_miles" in step.get("name", "")
        reply = await client.wait_for(lambda m: m.get("type") == "assistant_message"
                                      and "6.21 miles" in (m.get("output") or ""), timeout=60)
        assert reply["name"] == "converter"
    finally:
        await client.sio.disconnect()


async def test_mcp_tools_marked_by_the_entry_or_the_team_file_wait_for_approval(
        make_chorus: ChorusFactory, fake: FakeOpenAI) -> None:
    from chorus.testing import ApprovalDoneEvent, ApprovalEvent

    spec = team(calc=stdio(tools=["add", "crash"], requires_approval=["crash"]))
    spec["approvals"] = ["calc__add"]
    chorus = over_http(make_chorus, fake, spec)
    try:
        # Denied: the server never gets the call (it would have stopped the server).
        fake.queue_tool_call("calc__crash", {}).queue_text("I did not crash it.")
        events = await run(chorus, "Crash the server", approve=False)
        assert [(e.tool, e.agent) for e in events_of(events, ApprovalEvent)] == [("calc__crash", "helper")]
        assert [e.status for e in events_of(events, ApprovalDoneEvent)] == ["denied"]
        assert "Not run: the user denied calc__crash" in json.dumps(fake.requests[1]["messages"])
        [status] = [s.status() for s in chorus.mcp.sources(chorus.team("tools"))]
        assert status.state == "ready" and status.calls == 0

        # Listed in the team file and approved: the server runs it once.
        fake.queue_tool_call("calc__add", {"a": 1, "b": 2}).queue_text("3.")
        events = await run(chorus, "What is 1 + 2?", approve=True)
        assert [e.tool for e in events_of(events, ApprovalEvent)] == ["calc__add"]
        [result] = results(events)
        assert "1 + 2 = 3" in result.result
        [status] = [s.status() for s in chorus.mcp.sources(chorus.team("tools"))]
        assert status.calls == 1
    finally:
        await chorus.mcp.close()
