"""run_turn: the one path of a turn. Events, stop, errors and bad input, with local models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FIRST_PARTY_PLUGINS

from chorus import AgentSpec, ToolSpec, hookimpl
from chorus.events import DoneEvent, ErrorEvent, MessageEvent, TokenEvent, ToolCallEvent, ToolResultEvent, TurnEvent
from chorus.models import scripted_model, tool_call
from chorus.settings import Settings
from chorus.teams import TeamCatalog, TeamSpec, Termination
from chorus.turn import ChatSession, Chorus, ChorusError, Turn, TurnObserver, clean_text, run_turn


def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


class EchoPlugin:
    """An in-process plugin with two agents, one of them with a tool."""

    @hookimpl
    def chorus_register_tools(self) -> list[ToolSpec]:
        return [ToolSpec(func=shout, keywords=("shout",))]

    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [
            AgentSpec(name="alice", description="Alice answers first.", tools=("shout",)),
            AgentSpec(name="bob", description="Bob answers second."),
        ]


def make_chorus(*teams: TeamSpec, model: str = "scripted", **settings: Any) -> Chorus:
    cfg = Settings(model=model, plugins="echo", offline_token_delay=0, **settings)
    base = Chorus.load(cfg, extra_plugins=[("echo", EchoPlugin())])
    catalog = TeamCatalog(teams={t.name: t for t in teams} or {"duo": DUO})
    return Chorus(settings=cfg, registry=base.registry, catalog=catalog)


DUO = TeamSpec(name="duo", type="round_robin", members=["alice", "bob"], default=True,
               termination=Termination(max_messages=3))
SOLO = TeamSpec(name="solo", type="round_robin", members=["alice"], default=True)


@pytest.fixture(autouse=True)
def clean_script() -> Iterator[None]:
    scripted_model.reset()
    try:
        yield
    finally:
        scripted_model.reset()


async def collect(session: ChatSession, text: str) -> list[TurnEvent]:
    return [e async for e in run_turn(session, text)]


def messages(events: list[TurnEvent]) -> list[tuple[str, str]]:
    return [(e.agent, e.content) for e in events if isinstance(e, MessageEvent)]


async def test_round_robin_turn_streams_each_agent_and_ends_with_done() -> None:
    scripted_model.queue("Hello from Alice.", "And Bob here.")
    session = make_chorus().open_session()
    events = await collect(session, "hi both")
    assert messages(events) == [("alice", "Hello from Alice."), ("bob", "And Bob here.")]
    for agent, content in messages(events):
        streamed = "".join(e.text for e in events if isinstance(e, TokenEvent) and e.agent == agent)
        assert streamed == content
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.stop_reason == "max_messages"
    assert done.messages == 2 and done.agents == ["alice", "bob"]
    assert sum(1 for e in events if isinstance(e, DoneEvent)) == 1


async def test_streamed_and_non_streamed_runs_agree() -> None:
    script = ("First answer, with several words.", "Second answer.")
    scripted_model.queue(*script)
    streamed = await collect(make_chorus().open_session(stream=True), "question")
    scripted_model.queue(*script)
    plain = await collect(make_chorus().open_session(stream=False), "question")
    assert messages(streamed) == messages(plain) == [("alice", script[0]), ("bob", script[1])]
    assert any(isinstance(e, TokenEvent) for e in streamed)
    assert not any(isinstance(e, TokenEvent) for e in plain)
    assert [e.stop_reason for e in streamed + plain if isinstance(e, DoneEvent)] == ["max_messages"] * 2


async def test_tool_call_and_result_events() -> None:
    scripted_model.queue(tool_call("shout", text="quiet please"), "Done shouting.")
    session = make_chorus(SOLO).open_session()
    events = await collect(session, "shout quiet please")
    call = next(e for e in events if isinstance(e, ToolCallEvent))
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert (call.agent, call.name) == ("alice", "shout")
    assert result.call_id == call.call_id and result.result == "QUIET PLEASE" and not result.is_error
    assert messages(events) == [("alice", "Done shouting.")]


def quit_now(text: str) -> str:
    """A plugin tool that tries to end the process."""
    raise SystemExit(3)


async def test_a_tool_that_exits_fails_as_a_tool_and_the_process_goes_on() -> None:
    class Exiting:
        @hookimpl
        def chorus_register_tools(self) -> list[ToolSpec]:
            return [ToolSpec(func=quit_now)]

        @hookimpl
        def chorus_register_agents(self) -> list[AgentSpec]:
            return [AgentSpec(name="quitter", description="Calls a tool that exits.", tools=("quit_now",))]

    cfg = Settings(model="scripted", plugins="exiting", offline_token_delay=0)
    base = Chorus.load(cfg, extra_plugins=[("exiting", Exiting())])
    team = TeamSpec(name="q", type="round_robin", members=["quitter"], default=True)
    chorus = Chorus(settings=cfg, registry=base.registry, catalog=TeamCatalog(teams={"q": team}))
    scripted_model.queue(tool_call("quit_now", text="bye"), "That tool failed.")
    events = await collect(chorus.open_session(), "please quit")
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.is_error and "tried to stop the process" in result.result
    assert messages(events) == [("quitter", "That tool failed.")]


async def test_team_remembers_earlier_turns() -> None:
    scripted_model.queue("noted", "you said blue")
    session = make_chorus(SOLO).open_session()
    await collect(session, "my favourite colour is blue")
    await collect(session, "what is my favourite colour?")
    seen = [m.get("content") for m in scripted_model.requests[-1].messages]
    assert "my favourite colour is blue" in seen and "noted" in seen


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "empty_message"), ("   \n\t ", "empty_message"), ("x" * 1_000_001, "message_too_long")],
)
async def test_bad_input_is_rejected_clearly_and_session_keeps_working(text: str, code: str) -> None:
    session = make_chorus(SOLO).open_session()
    events = await collect(session, text)
    assert isinstance(events[0], ErrorEvent) and events[0].code == code and events[0].message
    assert isinstance(events[-1], DoneEvent) and events[-1].stop_reason == "rejected"
    assert scripted_model.requests == []  # the model never saw it
    scripted_model.queue("still here")
    assert messages(await collect(session, "hello")) == [("alice", "still here")]


def test_invalid_unicode_and_control_characters_are_cleaned() -> None:
    assert clean_text("caf\udce9 ok\x00\x07 \n") == "caf\ufffd ok"
    assert clean_text("line one\nline\ttwo") == "line one\nline\ttwo"


async def test_a_second_message_while_a_turn_runs_is_refused_not_dropped() -> None:
    scripted_model.token_delay = 0.02
    scripted_model.queue("a slow answer " * 10, "next")
    session = make_chorus(SOLO).open_session()
    first = asyncio.create_task(collect(session, "first"))
    await asyncio.sleep(0.05)
    second = await collect(session, "second")
    assert isinstance(second[0], ErrorEvent) and second[0].code == "busy"
    assert messages(await first)[0][0] == "alice"


async def test_stop_ends_the_turn_and_the_next_message_works() -> None:
    scripted_model.token_delay = 0.05
    scripted_model.queue("word " * 200)
    session = make_chorus(SOLO).open_session()
    events: list[TurnEvent] = []

    async def consume() -> None:
        async for e in run_turn(session, "talk a lot"):
            events.append(e)
            if isinstance(e, TokenEvent) and len(events) > 3:
                session.stop()

    await asyncio.wait_for(consume(), timeout=5)
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.stop_reason == "stopped"
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert 0 < len(tokens) < 200
    scripted_model.token_delay = 0
    for n in range(4):  # every later turn answers (AutoGen's runtime once lost every other one)
        scripted_model.queue(f"fresh answer {n}")
        assert messages(await collect(session, f"again {n}")) == [("alice", f"fresh answer {n}")]
    # The stopped turn was rewound: the model does not see half a reply.
    assert "word word word" not in str(scripted_model.requests[-1].messages)


async def test_cancelling_the_consumer_task_leaves_the_session_usable() -> None:
    scripted_model.token_delay = 0.05
    scripted_model.queue("word " * 200)
    session = make_chorus(SOLO).open_session()
    task = asyncio.create_task(collect(session, "talk"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    scripted_model.token_delay = 0
    for n in range(4):
        scripted_model.queue(f"back again {n}")
        answer = await asyncio.wait_for(collect(session, f"hello {n}?"), 5)
        assert messages(answer) == [("alice", f"back again {n}")]


async def test_model_failure_is_an_error_event_and_the_session_recovers() -> None:
    session = make_chorus(SOLO).open_session()
    events = await collect(session, "hello")  # nothing queued: the scripted model raises
    err = next(e for e in events if isinstance(e, ErrorEvent))
    assert "scripted model" in err.message or "ScriptExhausted" in err.message
    assert isinstance(events[-1], DoneEvent) and events[-1].stop_reason == "error"
    scripted_model.queue("recovered")
    assert messages(await collect(session, "hello")) == [("alice", "recovered")]


def test_unknown_team_and_unknown_model_are_clear_errors() -> None:
    with pytest.raises(ChorusError, match="Unknown team 'nope'"):
        make_chorus().open_session("nope")
    with pytest.raises(ChorusError, match="Unknown model 'no-such-provider/zzz'"):
        make_chorus(model="no-such-provider/zzz").open_session()


def test_offline_session_announces_the_offline_model() -> None:
    session = make_chorus(SOLO, model="offline").open_session()
    assert any("offline model" in n.text for n in session.notices())
    assert not any("offline model" in n.text for n in make_chorus(SOLO).open_session().notices())


async def test_offline_model_routes_and_calls_tools_in_the_default_team() -> None:
    chorus = Chorus.load(Settings(model="offline", offline_token_delay=0, plugins="assistant,guide"))
    session = chorus.open_session()
    events = await collect(session, "What time is it in Tokyo?")
    call = next(e for e in events if isinstance(e, ToolCallEvent))
    assert call.name == "current_time" and "Tokyo" in call.arguments
    assert "Asia/Tokyo" in messages(events)[-1][1]
    events = await collect(session, "How do I write a plugin?")
    assert messages(events)[-1][0] == "guide" and "entry point" in messages(events)[-1][1]


@pytest.mark.parametrize(
    ("question", "agent", "needle"),
    [
        ("What is 12 * (3 + 4)?", "mathematician", "= 84"),
        ("convert 5 km to miles", "mathematician", "3.1068"),
        ("What is the capital of France?", "assistant", "can't answer that one"),
        ("How many days until 2030-01-01?", "assistant", "day"),
    ],
)
async def test_offline_selector_routes_to_the_agent_whose_tool_can_answer(
    question: str, agent: str, needle: str
) -> None:
    # The default team of the built-ins and the first-party mathematician, as this repository installs them.
    chorus = Chorus.load(Settings(model="offline", offline_token_delay=0, plugins=FIRST_PARTY_PLUGINS))
    events = await collect(chorus.open_session(), question)
    speaker, content = messages(events)[-1]
    assert speaker == agent and needle in content


async def test_a_consumer_that_stops_reading_leaves_the_session_usable() -> None:
    scripted_model.token_delay = 0.05
    scripted_model.queue("word " * 200)
    session = make_chorus(SOLO).open_session()
    events = run_turn(session, "talk")
    async for event in events:
        if isinstance(event, TokenEvent):
            break
    await asyncio.wait_for(events.aclose(), 5)  # type: ignore[attr-defined]
    scripted_model.token_delay = 0
    scripted_model.queue("listening again")
    assert messages(await asyncio.wait_for(collect(session, "hello"), 5)) == [("alice", "listening again")]


async def test_editing_an_earlier_message_rewinds_the_team() -> None:
    session = make_chorus(SOLO).open_session()
    scripted_model.queue("first answer", "second answer")
    [e async for e in run_turn(session, "my name is Ann", message_id="m1")]
    [e async for e in run_turn(session, "I like jazz", message_id="m2")]
    scripted_model.queue("edited answer")
    events = [e async for e in run_turn(session, "my name is Bob", message_id="m1")]
    assert any(e.type == "notice" and "rewound" in e.text for e in events)  # type: ignore[attr-defined]
    assert messages(events) == [("alice", "edited answer")]
    seen = [m.get("content") for m in scripted_model.requests[-1].messages]
    assert "my name is Bob" in seen
    assert "my name is Ann" not in seen and "I like jazz" not in seen and "second answer" not in seen


@pytest.mark.parametrize("wait", [True, False])
async def test_a_team_prepared_at_chat_start_answers_and_rewinds_like_any_other(wait: bool) -> None:
    """start_preparing() sets the runtime up ahead; a first message may come before it is done."""
    session = make_chorus(SOLO).open_session()
    session.start_preparing()
    if wait:
        await asyncio.sleep(0.2)
    scripted_model.queue("first answer", "second answer")
    first = [e async for e in run_turn(session, "my name is Ann", message_id="m1")]
    assert messages(first) == [("alice", "first answer")]
    [e async for e in run_turn(session, "I like jazz", message_id="m2")]
    scripted_model.queue("edited answer")
    events = [e async for e in run_turn(session, "my name is Bob", message_id="m1")]
    assert messages(events) == [("alice", "edited answer")]
    seen = [m.get("content") for m in scripted_model.requests[-1].messages]
    assert "my name is Bob" in seen and "my name is Ann" not in seen  # rewound to the prepared state


RUNAWAY = TeamSpec(name="runaway", type="round_robin", members=["alice", "bob"], default=True,
                   termination=Termination(max_messages=50))


async def test_a_token_budget_stops_a_runaway_team_and_keeps_what_was_said() -> None:
    scripted_model.default = "and so on " * 20  # every call answers at length, forever
    session = make_chorus(RUNAWAY, turn_token_budget=300).open_session()
    events = await collect(session, "talk among yourselves")
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.stop_reason == "budget"
    said = messages(events)
    assert 1 <= len(said) < 10  # stopped long before max_messages
    notice = next(e for e in events if e.type == "notice" and e.code == "budget")  # type: ignore[attr-defined]
    assert "per-turn budget of 300" in notice.text  # type: ignore[attr-defined]
    # The conversation goes on, and the team kept what was said before the stop.
    scripted_model.default = None
    scripted_model.queue("back to normal", "me too")
    events = await collect(session, "hello again")
    assert [text for _agent, text in messages(events)][:1] == ["back to normal"]  # round robin goes on
    assert "and so on" in " ".join(str(m.get("content")) for m in scripted_model.requests[-1].messages)


LONG_RUNAWAY = TeamSpec(name="long_runaway", type="round_robin", members=["alice", "bob"], default=True,
                        termination=Termination(max_messages=30))


async def test_the_default_token_budget_stops_a_runaway_team() -> None:
    # Every call answers 2,000 words and sees all earlier ones: 30 messages would use ~0.9 M tokens.
    scripted_model.default = "word " * 2_000
    assert Settings().turn_token_budget == 200_000
    session = make_chorus(LONG_RUNAWAY).open_session()  # no budget configured: the default applies
    events = await collect(session, "talk among yourselves")
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.stop_reason == "budget"
    assert 5 <= len(messages(events)) < 20
    notice = next(e for e in events if e.type == "notice" and e.code == "budget")  # type: ignore[attr-defined]
    assert "per-turn budget of 200,000" in notice.text  # type: ignore[attr-defined]


async def test_a_token_budget_of_zero_means_no_cap() -> None:
    scripted_model.default = "and so on " * 20
    session = make_chorus(RUNAWAY, turn_token_budget=0).open_session()
    events = await collect(session, "talk among yourselves")
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.stop_reason == "max_messages"
    assert len(messages(events)) == 49  # the task message counts as one of the 50
    assert not any(e.type == "notice" and e.code == "budget" for e in events)  # type: ignore[attr-defined]


async def test_a_daily_cost_budget_refuses_turns_once_spent(tmp_path: Any) -> None:
    from chorus.store import database_url, make_engine, upgrade
    from chorus.store.usage import UsageLedger, UsageRow

    url = database_url(Settings(home=tmp_path))
    upgrade(url)
    engine = make_engine(url)
    ledger = UsageLedger(engine)
    try:
        await ledger.record([UsageRow(user="local", thread_id="t0", turn_id="x", team="solo", agent="alice",
                                      model="gpt-4o", prompt_tokens=1000, completion_tokens=500, cost=0.75,
                                      latency_ms=900.0)])
        session = make_chorus(SOLO, user_daily_cost_budget=1.0).open_session(ledger=ledger)
        scripted_model.queue("fine")
        assert messages(await collect(session, "first")) == [("alice", "fine")]  # $0.75 of $1.00 spent
        await ledger.record([UsageRow(user="local", thread_id="t0", turn_id="y", team="solo", agent="alice",
                                      model="gpt-4o", prompt_tokens=1000, completion_tokens=500, cost=0.30,
                                      latency_ms=900.0)])
        events = await collect(session, "second")
        assert isinstance(events[-1], DoneEvent) and events[-1].stop_reason == "rejected"
        error = next(e for e in events if isinstance(e, ErrorEvent))
        assert error.code == "budget" and "today's budget of $1.00" in error.message
        other = make_chorus(SOLO, user_daily_cost_budget=1.0).open_session(user_id="someone-else", ledger=ledger)
        scripted_model.queue("yours is untouched")
        assert messages(await collect(other, "hi")) == [("alice", "yours is untouched")]
        # Every call of those turns is in the ledger, attributed to its user and agent.
        totals = {t.key: t for t in await ledger.report("user")}
        assert totals["someone-else"].calls == 1 and totals["local"].calls == 3
        assert round(totals["local"].cost, 2) == 1.05
    finally:
        await engine.dispose()


async def _same_as_autogen(session: ChatSession) -> dict[str, Any]:
    """What Chorus saves for the session's team now, checked against AutoGen's own save_state."""
    assert session.built is not None
    ours = await session._states.save(session.built.team)
    assert ours == await session.built.team.save_state()
    return dict(ours)


async def test_the_state_saved_after_each_turn_is_autogens_own_without_dumping_the_history_again() -> None:
    """Chorus saves the team after every turn without dumping the whole conversation each time
    (a turn's cost must not grow with the conversation); what it saves must still be exactly what
    AutoGen's save_state gives, through tool calls, a stop and an edit, or a resumed or rewound
    conversation would not be the one the user had."""
    session = make_chorus(DUO).open_session()
    scripted_model.queue(tool_call("shout", text="hi"), "Alice shouted.", "Bob heard it.")
    [e async for e in run_turn(session, "shout hi", message_id="m1")]
    first = await _same_as_autogen(session)
    scripted_model.queue("Alice again.", "Bob again.")
    [e async for e in run_turn(session, "and again", message_id="m2")]
    second = await _same_as_autogen(session)
    manager = "RoundRobinGroupChatManager"
    thread = second["agent_states"][manager]["message_thread"]
    assert len(thread) > len(first["agent_states"][manager]["message_thread"])
    assert thread[0] is first["agent_states"][manager]["message_thread"][0]  # dumped once, reused

    scripted_model.token_delay = 0.05  # a stopped turn: the team is rebuilt from the saved state
    scripted_model.queue("word " * 200)
    async for event in run_turn(session, "talk a lot", message_id="m3"):
        if isinstance(event, TokenEvent):
            session.stop()
    scripted_model.token_delay = 0
    assert await _same_as_autogen(session) == second
    scripted_model.queue("Alice on three.", "Bob on three.")
    [e async for e in run_turn(session, "three", message_id="m3")]
    await _same_as_autogen(session)
    scripted_model.queue("Alice edited.", "Bob edited.")
    events = [e async for e in run_turn(session, "and again, edited", message_id="m2")]
    assert any(e.type == "notice" and e.code == "rewound" for e in events)  # type: ignore[attr-defined]
    edited = await _same_as_autogen(session)
    texts = str(edited)
    assert "and again, edited" in texts and "Alice again." not in texts and "three" not in texts


async def test_a_selector_teams_saved_state_is_autogens_own_too() -> None:
    chorus = Chorus.load(Settings(model="offline", offline_token_delay=0, plugins="assistant,guide"))
    session = chorus.open_session()
    for question in ("What time is it in Tokyo?", "How do I write a plugin?", "What can you do?"):
        [e async for e in run_turn(session, question)]
        await _same_as_autogen(session)


class Recorder(TurnObserver):
    """An observer that writes down what it is told (as a metrics exporter would)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.ends: list[tuple[str, int, str]] = []

    def begin(self, turn: Turn) -> None:
        self.seen.append(f"begin {turn.typed}")

    def event(self, turn: Turn, event: TurnEvent) -> None:
        self.seen.append(event.type)

    async def end(self, turn: Turn, done: DoneEvent) -> None:
        self.ends.append((done.stop_reason, len(turn.calls), turn.id))

    def closed(self, turn: Turn) -> None:
        self.seen.append("closed")


class Broken(TurnObserver):
    def begin(self, turn: Turn) -> None:
        raise RuntimeError("observer bug")

    async def end(self, turn: Turn, done: DoneEvent) -> None:
        raise RuntimeError("observer bug")

    def closed(self, turn: Turn) -> None:
        raise RuntimeError("observer bug")


async def test_observers_see_every_turn_once_and_a_broken_one_changes_nothing() -> None:
    chorus = make_chorus(SOLO)
    recorder = Recorder()
    chorus.observers.extend([Broken(), recorder])
    session = chorus.open_session()
    scripted_model.queue("hello there")
    events = await collect(session, "hi")
    assert messages(events) == [("alice", "hello there")]
    # Every event in order, then (the turn wound down, after the reader had done) closed.
    assert recorder.seen[0] == "begin hi" and recorder.seen[1:] == [*(e.type for e in events), "closed"]
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert recorder.ends == [(done.stop_reason, 1, done.turn_id)]

    # A refused message is no turn: nobody is told.
    await collect(session, "")
    assert len(recorder.ends) == 1

    # A turn cut off by its reader still ends, once, as stopped, with the calls it made.
    scripted_model.token_delay = 0.05
    scripted_model.queue("word " * 200)
    cut = run_turn(session, "talk")
    async for event in cut:
        if isinstance(event, TokenEvent):
            break
    await asyncio.wait_for(cut.aclose(), 5)  # type: ignore[attr-defined]
    assert [e[0] for e in recorder.ends] == [done.stop_reason, "stopped"]
    assert recorder.seen.count("closed") == 2
    assert session.turn is None  # the session no longer points at a turn
