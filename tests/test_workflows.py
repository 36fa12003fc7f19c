"""Workflow team types: ``sequential`` (a pipeline), ``iterative`` (draft and review until approved),
``swarm`` (members hand the conversation to each other) and ``graph`` (edges with conditions).

Each is tried as users meet it: the order members speak in and what each sees, the offline model,
the stop button, an edited earlier message, a conversation resumed by a new process (the server
restarted) from the SQLite store, the MLflow trace and the cost ledger, and team files the type
cannot run (refused with their file and line while the other teams serve).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from chorus import AgentSpec, hookimpl
from chorus.settings import Settings
from chorus.store import make_engine, upgrade
from chorus.store.checkpoints import CheckpointStore
from chorus.store.db import database_url
from chorus.store.usage import UsageLedger
from chorus.teams.registry import check_team, team_type_names
from chorus.teams.spec import load_teams
from chorus.testing import (
    ChorusFactory,
    ErrorEvent,
    HandoffEvent,
    MessageEvent,
    NoticeEvent,
    ProgressEvent,
    ScriptedModel,
    TokenEvent,
    done,
    events_of,
    replies,
    run,
    tool_call,
)
from chorus.turn import run_turn


class Pipeline:
    """Three agents of a pipeline and two of a review loop."""

    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name=name, description=f"The {name}.") for name in
                ("researcher", "planner", "coder", "writer", "editor")]


PIPELINE = {"name": "build", "type": "sequential", "members": ["researcher", "planner", "coder"], "default": True}
REVIEW = {"name": "review", "type": "iterative", "members": ["writer", "editor"], "max_iterations": 3}
FAN = {"name": "fan", "type": "graph", "members": ["researcher", "planner", "coder", "writer"],
       "edges": [{"from": "researcher", "to": ["planner", "coder"]},  # a fan-out...
                 {"from": "planner", "to": "writer"}, {"from": "coder", "to": "writer"}]}  # ...and a join
DESK = {"name": "desk", "type": "swarm", "members": ["researcher", "planner", "coder"]}


def said(events: list[Any]) -> list[tuple[str, str]]:
    return [(m.agent, m.content) for m in replies(events)]


# -- sequential --------------------------------------------------------------------------------------


async def test_a_pipeline_runs_each_member_once_in_order_and_each_sees_the_steps_before(
        make_chorus: ChorusFactory) -> None:
    model = ScriptedModel("Notes: users want a CLI.", "Plan: argparse, one command.", "print('hello')")
    chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[PIPELINE])
    events = await run(chorus, "Build me a greeting tool")
    assert said(events) == [("researcher", "Notes: users want a CLI."), ("planner", "Plan: argparse, one command."),
                            ("coder", "print('hello')")]
    assert done(events).stop_reason == "completed" and done(events).messages == 3
    # Where it is, as it goes: each step announced before its member speaks.
    progress = [e for e in events if isinstance(e, (ProgressEvent, MessageEvent))]
    assert [(type(e).__name__, getattr(e, "text", e.agent)) for e in progress] == [
        ("ProgressEvent", "step 1 of 3: researcher"), ("MessageEvent", "researcher"),
        ("ProgressEvent", "step 2 of 3: planner"), ("MessageEvent", "planner"),
        ("ProgressEvent", "step 3 of 3: coder"), ("MessageEvent", "coder")]
    coder_saw = [m.get("content") for m in model.requests[-1].messages]
    assert "Build me a greeting tool" in coder_saw
    assert "Notes: users want a CLI." in coder_saw and "Plan: argparse, one command." in coder_saw

    # The next message starts the pipeline again from its first step, with the earlier turn in view.
    model.queue("More notes.", "Plan B.", "print('bye')")
    events = await run(chorus, "Now a farewell tool")
    assert [agent for agent, _ in said(events)] == ["researcher", "planner", "coder"]


async def test_a_pipeline_answers_offline(make_chorus: ChorusFactory) -> None:
    chorus = make_chorus(installed="chorus", teams=[
        {"name": "steps", "type": "sequential", "members": ["assistant", "guide"], "default": True}])
    events = await run(chorus, "What time is it in Tokyo?")
    assert [m.agent for m in replies(events)] == ["assistant", "guide"]
    assert "Asia/Tokyo" in replies(events)[0].content
    assert done(events).stop_reason == "completed"


async def test_a_pipeline_cut_short_by_max_messages_starts_over_with_the_next_message(
        make_chorus: ChorusFactory) -> None:
    model = ScriptedModel("Notes.", "Plan.", "Notes again.", "Plan again.")
    capped = {**PIPELINE, "termination": {"max_messages": 3}}  # the user's message and two steps
    chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[capped])
    session = chorus.open_session()
    first = await run(session, "Build it")
    assert [m.agent for m in replies(first)] == ["researcher", "planner"]
    assert done(first).stop_reason == "max_messages"
    second = await run(session, "Build something else")
    assert [m.agent for m in replies(second)] == ["researcher", "planner"]  # a new request: from the start


# -- iterative ---------------------------------------------------------------------------------------


async def test_a_review_loop_repeats_until_the_reviewer_approves(make_chorus: ChorusFactory) -> None:
    model = ScriptedModel("Draft one.", "Too short: add an example.", "Draft two, with an example.",
                          "**APPROVED** - clear and complete.")
    chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[REVIEW])
    events = await run(chorus, "Write a haiku about tea")
    assert [agent for agent, _ in said(events)] == ["writer", "editor", "writer", "editor"]
    finished = done(events)
    assert finished.stop_reason == "completed" and "Approved by editor" in finished.detail
    assert not events_of(events, NoticeEvent)  # approved: nothing to warn about
    writer_saw = [m.get("content") for m in model.requests[2].messages]
    assert "Too short: add an example." in writer_saw  # the review reached the producer

    # "Not approved" is no approval: only a reply that starts with the phrase counts.
    model.queue("Draft.", "Not APPROVED yet.", "Draft again.", "APPROVED.")
    events = await run(chorus, "Another one")
    assert len(replies(events)) == 4


async def test_an_approval_in_the_last_round_counts_and_the_next_message_starts_with_the_producer(
        make_chorus: ChorusFactory) -> None:
    board = {"name": "board", "type": "iterative", "members": ["writer", "editor", "planner"], "max_iterations": 2}
    model = ScriptedModel("Draft.", "Shorter.", "Fine by me.", "Short draft.", "Still long.", "APPROVED")
    chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[board])
    session = chorus.open_session()
    events = await run(session, "Write a motto")
    # The last reviewer approves with the last message the cap allows (7 = 1 + 2 rounds x 3): approved.
    assert [m.agent for m in replies(events)] == ["writer", "editor", "planner"] * 2
    assert done(events).stop_reason == "completed" and "Approved by planner" in done(events).detail
    assert not events_of(events, NoticeEvent)
    # The first reviewer approves mid-round: the second does not speak...
    model.queue("New draft.", "APPROVED")
    again = await run(session, "Another motto")
    assert [m.agent for m in replies(again)] == ["writer", "editor"]
    # ...and the next message still starts with the producer, not with the reviewer who was next.
    model.queue("Third draft.", "APPROVED")
    third = await run(session, "A third motto")
    assert [m.agent for m in replies(third)] == ["writer", "editor"]
    # Reviewers are told how to approve, with the team's phrase (a real model needs it).
    system = model.requests[-1].messages[0]
    assert system.get("role") == "system" and "start your reply with APPROVED" in str(system.get("content"))


async def test_a_reviewer_that_never_approves_stops_at_max_iterations_with_a_notice(
        make_chorus: ChorusFactory) -> None:
    model = ScriptedModel(default="No.")
    chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[{**REVIEW, "max_iterations": 2}])
    session = chorus.open_session()
    events = await run(session, "Write a limerick")
    assert [m.agent for m in replies(events)] == ["writer", "editor", "writer", "editor"]
    notices = [n for n in events_of(events, NoticeEvent) if n.code == "team_max_messages"]
    assert notices and "within 2 rounds" in notices[0].text
    assert done(events).stop_reason == "max_messages"
    # The conversation is still usable, and starts again with the producer.
    model.queue("A new draft.", "APPROVED")
    again = await run(session, "Try a shorter one")
    assert [m.agent for m in replies(again)] == ["writer", "editor"] and done(again).stop_reason == "completed"


async def test_an_offline_reviewer_approves_an_answer_and_sends_back_a_non_answer(
        make_chorus: ChorusFactory) -> None:
    reviewer = {"description": "Reviews the assistant's draft.", "system_message": "Review the draft."}
    chorus = make_chorus(installed="chorus", teams=[
        {"name": "checked", "type": "iterative", "members": ["assistant", "checker"], "max_iterations": 2,
         "agents": {"checker": reviewer}, "default": True}])
    events = await run(chorus, "What time is it in Tokyo?")
    assert [m.agent for m in replies(events)] == ["assistant", "checker"]
    assert replies(events)[-1].content.startswith("APPROVED") and done(events).stop_reason == "completed"

    events = await run(chorus, "What is the capital of France?")  # the offline model cannot answer it
    verdicts = [m.content for m in replies(events) if m.agent == "checker"]
    assert len(verdicts) == 2 and all(v.startswith("Not approved") for v in verdicts)
    assert any(n.code == "team_max_messages" for n in events_of(events, NoticeEvent))


# -- graph --------------------------------------------------------------------------------------------


async def test_a_graph_fans_out_to_two_members_and_joins_before_the_last(make_chorus: ChorusFactory) -> None:
    chorus = make_chorus(plugins=[Pipeline()], model=ScriptedModel(default="Step done."), teams=[FAN])
    events = await run(chorus, "Plan a small web API")
    order = [m.agent for m in replies(events)]
    assert order[0] == "researcher" and set(order[1:3]) == {"planner", "coder"} and order[3:] == ["writer"]
    assert done(events).stop_reason == "completed"
    # The next message runs the graph again from its start.
    events = await run(chorus, "And a second one")
    assert replies(events)[0].agent == "researcher" and len(replies(events)) == 4


async def test_a_graph_loops_while_a_condition_holds_and_ends_when_it_does_not(make_chorus: ChorusFactory) -> None:
    loop = {"name": "loop", "type": "graph", "members": ["writer", "editor", "coder"],
            "edges": [{"from": "writer", "to": "editor"},
                      {"from": "editor", "to": "writer", "when": "REVISE"},
                      {"from": "editor", "to": "coder", "when": "APPROVED"}]}
    model = ScriptedModel("Draft.", "REVISE: shorter.", "Shorter draft.", "APPROVED as it is.", "Published.")
    chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[loop])
    events = await run(chorus, "Write a slogan")
    assert said(events) == [("writer", "Draft."), ("editor", "REVISE: shorter."), ("writer", "Shorter draft."),
                            ("editor", "APPROVED as it is."), ("coder", "Published.")]
    assert done(events).stop_reason == "completed"
    # A loop goes past one pass of the graph: the steps go on counting, without "of".
    assert [e.text for e in events_of(events, ProgressEvent)] == [
        "step 1 of 3: writer", "step 2 of 3: editor", "step 3 of 3: writer", "step 4: editor", "step 5: coder"]
    # A message that takes no edge ends the graph there.
    model.queue("Draft.", "Hmm.")
    events = await run(chorus, "Write one more")
    assert [m.agent for m in replies(events)] == ["writer", "editor"] and done(events).stop_reason == "completed"

    # A judge that always says REVISE stops at the team's cap (max_iterations passes), not forever.
    chorus = make_chorus(plugins=[Pipeline()], model=ScriptedModel(default="REVISE again."),
                         teams=[{**loop, "max_iterations": 2}])
    events = await run(chorus, "Write another")
    assert len(replies(events)) == 6 and done(events).stop_reason == "max_messages"  # 1 + 3 members x 2


async def test_a_graph_answers_offline(make_chorus: ChorusFactory) -> None:
    chorus = make_chorus(installed="chorus", teams=[
        {"name": "relay", "type": "graph", "members": ["assistant", "guide"],
         "edges": [{"from": "assistant", "to": "guide"}], "default": True}])
    events = await run(chorus, "What time is it in Tokyo?")
    assert [m.agent for m in replies(events)] == ["assistant", "guide"]
    assert "Asia/Tokyo" in replies(events)[0].content


# -- a member that fails ------------------------------------------------------------------------------


def _fails(error: Exception) -> Any:
    def reply(request: Any) -> str:
        raise error
    return reply


async def test_a_member_that_fails_ends_the_turn_naming_it_without_a_traceback(make_chorus: ChorusFactory) -> None:
    from chorus.models import ModelError

    chain = {**PIPELINE, "members": ["researcher", "planner", "coder"]}
    graph = {"name": "line", "type": "graph", "members": ["researcher", "planner", "coder"],
             "edges": [{"from": "researcher", "to": "planner"}, {"from": "planner", "to": "coder"}]}
    for team in (chain, graph):
        model = ScriptedModel("Notes.", _fails(RuntimeError("the planning database is down")))
        chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[team])
        session = chorus.open_session()
        events = await run(session, "Build it")
        [error] = events_of(events, ErrorEvent)
        assert error.code == "turn_failed" and "while planner was answering" in error.message, team["name"]
        assert "RuntimeError: the planning database is down" in error.message
        assert "Traceback" not in error.message and 'File "' not in error.message
        assert done(events).stop_reason == "error"
        # The conversation is usable: the next message runs the whole pipeline.
        model.queue("Notes.", "Plan.", "Code.")
        again = await run(session, "Try again")
        assert [m.agent for m in replies(again)] == ["researcher", "planner", "coder"], team["name"]

    # A model error (the provider's) is shown as it was raised, with the member's name.
    model = ScriptedModel("Notes.", _fails(ModelError("The model provider is overloaded (HTTP 529).")))
    chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[chain])
    [error] = events_of(await run(chorus, "Build it"), ErrorEvent)
    assert (error.code, error.message) == ("model_error", "planner: The model provider is overloaded (HTTP 529).")


# -- swarm -------------------------------------------------------------------------------------------


async def test_a_swarm_hands_the_conversation_on_and_the_next_message_goes_to_whoever_has_it(
        make_chorus: ChorusFactory) -> None:
    model = ScriptedModel(tool_call("transfer_to_planner", reason="needs a plan"), "Plan: three steps.")
    chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[DESK])
    session = chorus.open_session()
    events = await run(session, "Plan my week")
    [handoff] = events_of(events, HandoffEvent)
    assert (handoff.agent, handoff.target, handoff.content) == ("researcher", "planner", "needs a plan")
    assert said(events) == [("planner", "Plan: three steps.")]  # the handoff is a step, not a reply
    assert not [e for e in events if getattr(e, "name", "").startswith("transfer_to_")]  # nor a tool call
    assert done(events).stop_reason == "completed"
    planner_saw = [m.get("content") for m in model.requests[-1].messages]
    assert "Plan my week" in planner_saw and "needs a plan" in planner_saw
    # Only the members given as targets are offered: everyone else in the team, never oneself.
    offered = sorted(t["function"]["name"] for t in model.requests[0].tools)
    assert offered == ["transfer_to_coder", "transfer_to_planner"]

    model.queue("Moved Tuesday's tasks.")
    events = await run(session, "Move Tuesday")
    assert said(events) == [("planner", "Moved Tuesday's tasks.")] and not events_of(events, HandoffEvent)


async def test_a_swarm_that_only_hands_back_and_forth_stops_at_the_message_cap(make_chorus: ChorusFactory) -> None:
    def pass_it_on(request: Any) -> Any:
        other = "planner" if request.hints.agent == "researcher" else "researcher"
        return tool_call(f"transfer_to_{other}", reason="not mine")

    team = {**DESK, "members": ["researcher", "planner"]}
    model = ScriptedModel(default=pass_it_on)
    chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[team])
    session = chorus.open_session()
    events = await run(session, "Whose is this?")
    assert len(events_of(events, HandoffEvent)) == 4  # 1 + 2 x 2 members = 5 messages, the user's first
    assert done(events).stop_reason == "max_messages" and not replies(events)
    [notice] = [n for n in events_of(events, NoticeEvent) if "handing the conversation" in n.text]
    assert "max_messages" in notice.text
    # The conversation is still usable.
    model.default = None
    model.queue("Mine after all.")
    assert said(await run(session, "Anyone?")) == [("researcher", "Mine after all.")]


async def test_an_offline_swarm_hands_each_question_to_the_member_that_fits_it(make_chorus: ChorusFactory) -> None:
    chorus = make_chorus(installed="chorus", teams=[
        {"name": "desk", "type": "swarm", "members": ["guide", "assistant", "librarian"], "default": True}])
    session = chorus.open_session()
    events = await run(session, "What time is it in Tokyo?")
    [handoff] = events_of(events, HandoffEvent)
    assert (handoff.agent, handoff.target) == ("guide", "assistant") and "assistant" in handoff.content
    assert [m.agent for m in replies(events)] == ["assistant"] and "Asia/Tokyo" in replies(events)[0].content
    # The assistant has the conversation now; a question for the knowledge base goes on to the librarian.
    events = await run(session, "How long do refunds take?")
    assert [(h.agent, h.target) for h in events_of(events, HandoffEvent)] == [("assistant", "librarian")]
    assert [m.agent for m in replies(events)] == ["librarian"] and "knowledge base" in replies(events)[0].content
    # A greeting stays with whoever has the conversation.
    events = await run(session, "Hello!")
    assert not events_of(events, HandoffEvent) and [m.agent for m in replies(events)] == ["librarian"]


# -- the same stop, rewind, resume, trace and ledger as every team ------------------------------------


async def _stop_after_first_token(session: Any, text: str) -> list[Any]:
    events: list[Any] = []
    stream = run_turn(session, text)
    async for event in stream:
        events.append(event)
        if isinstance(event, TokenEvent):
            session.stop()
    return events


async def test_stop_rewind_and_resume_after_a_restart_work_for_every_type(
        make_chorus: ChorusFactory, tmp_path: Path) -> None:
    url = database_url(Settings(home=tmp_path / "db"))
    upgrade(url)
    engine = make_engine(url)
    store, ledger = CheckpointStore(engine), UsageLedger(engine)
    try:
        hand_on = tool_call("transfer_to_planner", reason="needs a plan")
        for team, first_round, answers, next_round in (
                (PIPELINE, ["Notes.", "Plan.", "Code."], 3, ["Notes.", "Plan.", "Code."]),
                (REVIEW, ["Draft.", "APPROVED"], 2, ["Draft.", "APPROVED"]),
                (FAN, ["Notes.", "Step.", "Step.", "Summary."], 4, ["Notes.", "Step.", "Step.", "Summary."]),
                (DESK, [hand_on, "Plan."], 1, ["Plan, resumed."])):  # the planner has it after the first
            model = ScriptedModel()
            chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[team])
            thread = f"t-{team['name']}"
            session = chorus.open_session(user_id="ann", thread_id=thread, checkpoints=store, ledger=ledger)
            model.queue(*first_round)
            events = await run(session, "First request", message_id="m1")
            assert len(replies(events)) == answers, team["name"]

            # Stop: the turn ends as stopped, and the team forgets it.
            model.token_delay = 0.02
            model.queue("word " * 200)
            stopped = await _stop_after_first_token(session, "A long one")
            assert done(stopped).stop_reason == "stopped", team["name"]
            model.token_delay = 0.0

            # Edit the first message: rewound, answered anew; the model no longer sees the old text.
            model.queue(*first_round)
            events = await run(session, "First request, edited", message_id="m1")
            assert any(n.code == "rewound" for n in events_of(events, NoticeEvent)), team["name"]
            seen = [m.get("content") for m in model.requests[-1].messages]
            assert "First request, edited" in seen and "First request" not in seen and "A long one" not in seen

            # A new process (a fresh Chorus on the same store) resumes the thread where it was.
            restarted = make_chorus(plugins=[Pipeline()], model=model, teams=[team])
            again = restarted.open_session(user_id="ann", thread_id=thread, checkpoints=store, ledger=ledger)
            assert await again.resume(), team["name"]
            model.queue(*next_round)
            events = await run(again, "Second request", message_id="m2")
            assert len(replies(events)) == answers, team["name"]
            assert "First request, edited" in [m.get("content") for m in model.requests[-1].messages]
            # Another user holding the thread id gets nothing of it.
            intruder = restarted.open_session(user_id="mallory", thread_id=thread, checkpoints=store)
            assert not await intruder.resume()

        # Every member's model calls went to the cost ledger.
        calls = {total.key: total.calls for total in await ledger.report("agent", user="ann")}
        assert set(calls) == {"researcher", "planner", "coder", "writer", "editor"}
        assert all(count >= 2 for count in calls.values())
    finally:
        await engine.dispose()


async def test_each_type_writes_one_trace_per_turn_with_its_agents(make_chorus: ChorusFactory) -> None:
    from mlflow import MlflowClient

    for team, script in ((PIPELINE, ["Notes.", "Plan.", "Code."]), (REVIEW, ["Draft.", "APPROVED"]),
                         (FAN, ["Notes.", "Step.", "Step.", "Summary."]),
                         ({**DESK, "members": ["researcher", "planner"]},
                          [tool_call("transfer_to_planner", reason="a plan"), "Plan."])):
        chorus = make_chorus(plugins=[Pipeline()], model=ScriptedModel(*script), teams=[team], tracing=True,
                             home=Path(make_chorus.home) / f"trace-{team['name']}")
        events = await run(chorus, "Trace me")
        assert chorus.tracer is not None and chorus.tracer.flush(60)
        trace_id = await asyncio.to_thread(chorus.tracer.trace_id_of, done(events).turn_id)
        assert trace_id is not None, team["name"]
        trace = MlflowClient(chorus.tracer.uri).get_trace(trace_id)
        names = [span.name for span in trace.data.spans]
        for member in team["members"]:
            assert any(member in name for name in names), (team["name"], member, names)


# -- team files the type cannot run -----------------------------------------------------------------


def test_team_files_a_type_cannot_run_are_refused_with_file_and_line(make_chorus: ChorusFactory) -> None:
    home = Path(make_chorus.home) / "refused"
    agents = home / "agents"
    agents.mkdir(parents=True)
    (agents / "a-good.yaml").write_text("name: good\ntype: sequential\nmembers: [researcher, planner]\n"
                                        "default: true\n", encoding="utf-8")
    (agents / "lonely.yaml").write_text("name: lonely\ndescription: One member cannot review itself.\n"
                                        "type: iterative\nmembers: [writer]\n", encoding="utf-8")
    (agents / "twice.yaml").write_text("name: twice\ntype: sequential\n\nmembers: [coder, coder]\n",
                                       encoding="utf-8")
    (agents / "unknown.yaml").write_text("name: odd\n# a comment\ntype: pipeline\nmembers: [coder]\n",
                                         encoding="utf-8")
    (agents / "endless.yaml").write_text("name: endless\ntype: graph\nmembers: [writer, editor, coder]\nedges:\n"
                                         "  - {from: writer, to: editor}\n  - {from: editor, to: [writer, coder]}\n",
                                         encoding="utf-8")
    (agents / "no-end.yaml").write_text("name: no-end\ntype: graph\nmembers: [writer, editor]\nedges:\n"
                                        "  - {from: writer, to: editor}\n"
                                        "  - {from: editor, to: writer, when: REVISE}\n", encoding="utf-8")
    (agents / "outside.yaml").write_text("name: outside\ntype: graph\nmembers: [writer]\n\nedges:\n"
                                         "  - {from: writer, to: stranger}\n", encoding="utf-8")
    (agents / "bad-rounds.yaml").write_text("name: many\ntype: iterative\nmembers: [writer, editor]\n"
                                            "max_iterations: 0\n", encoding="utf-8")
    (agents / "stranger.yaml").write_text("name: stranger\ntype: swarm\nmembers: [writer, editor]\nhandoffs:\n"
                                          "  writer: [editor, stranger]\n", encoding="utf-8")
    catalog = load_teams(agents, None, None, team_type_names(), check_team)
    errors = "\n".join(catalog.errors)
    assert f"{agents / 'lonely.yaml'}:4:" in errors and "producer" in errors
    assert f"{agents / 'twice.yaml'}:4:" in errors and "each member once" in errors
    assert f"{agents / 'unknown.yaml'}:3:" in errors and "unknown type 'pipeline'" in errors
    assert f"{agents / 'bad-rounds.yaml'}:4:" in errors and "max_iterations" in errors
    assert f"{agents / 'endless.yaml'}:4:" in errors and "without exit condition" in errors
    assert f"{agents / 'no-end.yaml'}:4:" in errors and "leaf node" in errors
    assert f"{agents / 'outside.yaml'}:5:" in errors and "'stranger', not members of the team" in errors
    assert f"{agents / 'stranger.yaml'}:4:" in errors and "hands over to 'stranger', not members" in errors
    assert list(catalog.teams) == ["good"]  # the others are skipped; this one serves


async def test_a_swarm_member_that_fails_to_build_is_never_handed_the_conversation(
        make_chorus: ChorusFactory) -> None:
    class Broken:
        @hookimpl
        def chorus_register_agents(self) -> list[AgentSpec]:
            def explode(context: Any) -> Any:
                raise RuntimeError("no such model")
            return [AgentSpec(name="broken", description="Never builds.", factory=explode)]

    model = ScriptedModel("I will answer myself.")
    team = {"name": "desk", "type": "swarm", "members": ["researcher", "planner", "broken"], "default": True}
    chorus = make_chorus(plugins=[Pipeline(), Broken()], model=model, teams=[team])
    events = await run(chorus, "Anyone?")
    assert said(events) == [("researcher", "I will answer myself.")]
    offered = sorted(t["function"]["name"] for t in model.requests[0].tools)
    assert offered == ["transfer_to_planner"]  # the member that failed is no target


async def test_a_pipeline_the_user_stops_is_not_offered_again_but_one_the_server_stops_is(
        make_chorus: ChorusFactory, tmp_path: Path) -> None:
    from chorus.testing import checkpoint_store

    async with checkpoint_store(tmp_path / "db") as store:
        for by_server in (False, True):
            thread = f"t-{by_server}"
            model = ScriptedModel("Notes.", "word " * 200, token_delay=0.01)
            chorus = make_chorus(plugins=[Pipeline()], model=model, teams=[PIPELINE])
            session = chorus.open_session(user_id="ann", thread_id=thread, checkpoints=store)
            events: list[Any] = []
            async for event in run_turn(session, "Build it"):
                events.append(event)
                if isinstance(event, TokenEvent) and event.agent == "planner":
                    session.stop(keep_progress=by_server)  # the stop button, or a SIGTERM's drain
            assert done(events).stop_reason == "stopped"
            again = make_chorus(plugins=[Pipeline()], model=model, teams=[PIPELINE]).open_session(
                user_id="ann", thread_id=thread, checkpoints=store)
            assert await again.resume()
            if by_server:
                assert again.interrupted is not None and again.interrupted.done == [("researcher", "Notes.")]
            else:
                assert again.interrupted is None


async def test_the_second_opinion_graph_fans_out_joins_and_counts_each_step_once_offline(
        make_chorus: ChorusFactory) -> None:
    import yaml

    from chorus.testing import ProgressEvent as Progress

    spec = yaml.safe_load((Path(__file__).parents[1] / "agents" / "second-opinion.yaml").read_text(encoding="utf-8"))
    chorus = make_chorus(installed="chorus", teams=[{**spec, "default": True}])
    events = await run(chorus, "How long do refunds take?")
    steps = [e.text for e in events_of(events, Progress)]
    assert sorted(steps[:2]) == ["step 1 of 3: assistant", "step 2 of 3: librarian"] or sorted(steps[:2]) == [
        "step 1 of 3: librarian", "step 2 of 3: assistant"]
    assert steps[2] == "step 3 of 3: guide" and len(steps) == 3  # interleaved streams count once each
    said = {m.agent: m.content for m in replies(events)}
    assert set(said) == {"assistant", "librarian", "guide"} and list(said)[-1] == "guide"
    assert "answered that above" in said["guide"] and "librarian" in said["guide"]  # not a pointer elsewhere
