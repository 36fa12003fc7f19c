"""A plugin's per-conversation state (``ToolContext.state``) is part of the conversation: saved
with the team's checkpoint, back after a resume in another process (on SQLite and PostgreSQL),
rewound by an edit or a stop, and never another user's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fresh_postgres_database

from chorus import AgentSpec, ToolContext, ToolSpec, hookimpl
from chorus.events import ToolResultEvent, TurnEvent
from chorus.models import scripted_model, tool_call
from chorus.settings import Settings
from chorus.store import database_url, make_engine, upgrade
from chorus.store.checkpoints import CheckpointStore
from chorus.teams import TeamCatalog, TeamSpec
from chorus.turn import ChatSession, Chorus, run_turn


def set_code(code: str, context: ToolContext) -> str:
    """Remember a code for this conversation."""
    context.state["code"] = code
    context.state["history"] = [*context.state.get("history", []), code]
    return f"set {code}"


def read_code(context: ToolContext) -> str:
    """The code this conversation remembers."""
    return f"code={context.state.get('code', 'none')} history={context.state.get('history', [])}"


def keep_object(context: ToolContext) -> str:
    """Put something that is not JSON in the state."""
    context.state["lock"] = object()
    context.state["plain"] = "kept"
    return "ok"


class Vault:
    @hookimpl
    def chorus_register_tools(self) -> list[ToolSpec]:
        return [ToolSpec(func=set_code), ToolSpec(func=read_code), ToolSpec(func=keep_object)]

    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name="keeper", description="Keeps codes.", tools=("set_code", "read_code", "keep_object"))]


TEAM = TeamSpec(name="vault", type="round_robin", members=["keeper"], default=True)


def _chorus() -> Chorus:
    """A new process's Chorus (nothing shared with the last one but the database)."""
    settings = Settings(model="scripted", plugins="vault", memory=False, tracing=False)
    base = Chorus.load(settings, extra_plugins=[("vault", Vault())])
    return Chorus(settings=settings, registry=base.registry, catalog=TeamCatalog(teams={"vault": TEAM}))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = (database_url(Settings(home=tmp_path / "home")) if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    upgrade(url)
    return url


@pytest.fixture(autouse=True)
def clean_script() -> Iterator[None]:
    scripted_model.reset()
    yield
    scripted_model.reset()


async def _say(session: ChatSession, text: str, *script: object, message_id: str | None = None) -> list[TurnEvent]:
    for item in script:
        scripted_model.queue(item)  # type: ignore[arg-type]
    return [e async for e in run_turn(session, text, message_id=message_id)]


def _results(events: list[TurnEvent]) -> list[str]:
    return [e.result for e in events if isinstance(e, ToolResultEvent)]


def test_tool_state_survives_a_restart_and_rewinds_with_an_edit(db_url: str) -> None:
    async def scenario() -> None:
        engine = make_engine(db_url)
        store = CheckpointStore(engine)
        try:
            first = _chorus().open_session(user_id="alice", thread_id="t-vault", checkpoints=store)
            await _say(first, "hello", "Hi.", message_id="m1")
            await _say(first, "my code is 42", tool_call("set_code", code="42"), "Noted.", message_id="m2")
            await _say(first, "and now 43", tool_call("set_code", code="43"), "Noted.", message_id="m3")

            # Another process (a restart, another worker) resumes the thread: the tools' state is back.
            again = _chorus().open_session(user_id="alice", thread_id="t-vault", checkpoints=store)
            assert again.tool_context is not None and again.tool_context.state == {}
            assert await again.resume()
            events = await _say(again, "what is my code?", tool_call("read_code"), "Here.", message_id="m4")
            assert _results(events) == ["code=43 history=['42', '43']"]

            # Editing the message that set 43 rewinds the tools' state to before it.
            events = await _say(again, "what is my code now?", tool_call("read_code"), "Here.", message_id="m3")
            assert any(e.type == "notice" and e.code == "rewound" for e in events)  # type: ignore[attr-defined]
            assert _results(events) == ["code=42 history=['42']"]

            # ...and after yet another restart, editing the message that set 42 rewinds past it too.
            third = _chorus().open_session(user_id="alice", thread_id="t-vault", checkpoints=store)
            assert await third.resume()
            events = await _say(third, "no code today", tool_call("read_code"), "Nothing.", message_id="m2")
            assert _results(events) == ["code=none history=[]"]

            # Another user holding alice's thread id gets neither her team nor her tools' state.
            intruder = _chorus().open_session(user_id="mallory", thread_id="t-vault", checkpoints=store)
            assert not await intruder.resume()
            events = await _say(intruder, "what is the code?", tool_call("read_code"), "Here.")
            assert _results(events) == ["code=none history=[]"]
        finally:
            await engine.dispose()

    asyncio.run(scenario())


async def test_a_stopped_turn_forgets_the_state_its_tools_set() -> None:
    session = _chorus().open_session(user_id="alice")
    await _say(session, "my code is 1", tool_call("set_code", code="1"), "Noted.")
    scripted_model.token_delay = 0.02
    scripted_model.queue(tool_call("set_code", code="2"), "word " * 200)
    async for event in run_turn(session, "make it 2 and talk"):
        if isinstance(event, ToolResultEvent):
            assert session.tool_context is not None and session.tool_context.state["code"] == "2"
        if event.type == "token":
            session.stop()
    scripted_model.token_delay = 0
    events = await _say(session, "code?", tool_call("read_code"), "Here.")
    assert _results(events) == ["code=1 history=['1']"]  # the stopped turn is forgotten, its state too


def test_values_that_are_not_json_live_for_the_session_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        url = database_url(Settings(home=tmp_path))
        upgrade(url)
        engine = make_engine(url)
        store = CheckpointStore(engine)
        try:
            session = _chorus().open_session(user_id="alice", thread_id="t-obj", checkpoints=store)
            events = await _say(session, "keep it", tool_call("keep_object"), "Kept.")
            assert _results(events) == ["ok"]  # the turn works and is saved
            again = _chorus().open_session(user_id="alice", thread_id="t-obj", checkpoints=store)
            assert await again.resume()
            assert again.tool_context is not None and again.tool_context.state == {"plain": "kept"}
        finally:
            await engine.dispose()

    with caplog.at_level(logging.WARNING, logger="chorus.store.tool_state"):
        asyncio.run(scenario())
    assert "ToolContext.state['lock'] is not JSON" in caplog.text
