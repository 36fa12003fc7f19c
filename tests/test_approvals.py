"""Approvals: a tool that needs one waits for its user's answer, which is stored, so that it outlives a
reload or a restart; a denial, an expiry or a channel that cannot ask never runs the tool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chorus import AgentSpec, TeamSpec, ToolSpec, hookimpl
from chorus.approvals import Approvals
from chorus.events import ApprovalDoneEvent, ApprovalEvent, DoneEvent, ToolResultEvent, TurnEvent
from chorus.models import ScriptedModel, tool_call
from chorus.store import approvals as store
from chorus.store.approvals import ApprovalError
from chorus.testing import checkpoint_store
from chorus.turn import ChatSession, run_turn
from chorus.turn.approving import detach, wake

ORDERS: list[str] = []


def place_order(item: str, quantity: int = 1) -> str:
    """Order ``quantity`` of ``item`` (it costs money)."""
    ORDERS.append(f"{quantity} x {item}")
    return f"Ordered {quantity} x {item}."


def look_up(item: str) -> str:
    """Look an item up (harmless)."""
    return f"{item}: in stock."


class ShopPlugin:
    @hookimpl
    def chorus_register_tools(self) -> list[ToolSpec]:
        return [ToolSpec(place_order, requires_approval=True), ToolSpec(look_up)]

    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name="clerk", description="Places orders.", tools=("place_order", "look_up"))]


TEAM = TeamSpec(name="shop", type="round_robin", members=["clerk"], default=True)


@pytest.fixture(autouse=True)
def no_orders() -> None:
    ORDERS.clear()


@pytest.fixture
async def conversations(tmp_path: Path) -> AsyncIterator[Any]:
    async with checkpoint_store(tmp_path / "db") as checkpoints:
        yield checkpoints


def open_session(chorus: Any, conversations: Any, *, user: str = "ana", thread: str = "t1",
                 timeout_s: float = 30.0) -> ChatSession:
    session: ChatSession = chorus.open_session("shop", user_id=user, thread_id=thread, checkpoints=conversations)
    session.approvals = Approvals(conversations.engine, timeout_s=timeout_s)
    return session


async def turn_until_asked(session: ChatSession, text: str) -> tuple[asyncio.Task[list[TurnEvent]], ApprovalEvent]:
    """Start a turn and return it with the approval request it stops at."""
    asked: asyncio.Queue[ApprovalEvent] = asyncio.Queue()

    async def consume() -> list[TurnEvent]:
        seen = []
        async for event in run_turn(session, text):
            seen.append(event)
            if isinstance(event, ApprovalEvent):
                asked.put_nowait(event)
        return seen

    task = asyncio.create_task(consume())
    getter = asyncio.ensure_future(asked.get())
    await asyncio.wait([getter, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    assert getter.done(), f"no approval was asked: {task.result() if task.done() else 'the turn still runs'}"
    return task, getter.result()


def scripted(*replies: Any) -> ScriptedModel:
    return ScriptedModel(*replies)


async def test_an_approved_call_runs_once_and_the_agent_reads_its_result(make_chorus: Any, conversations: Any) -> None:
    model = scripted(tool_call("place_order", item="Black Dog single", quantity=2), "Done: your order is placed.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = open_session(chorus, conversations)
    task, asked = await turn_until_asked(session, "order two Black Dog singles")
    assert (asked.agent, asked.tool, asked.arguments) == ("clerk", "place_order", {"item": "Black Dog single",
                                                                                   "quantity": 2})
    assert ORDERS == []  # it waits
    stored = await store.get(conversations.engine, asked.id)
    assert stored is not None and stored.pending and stored.request == "order two Black Dog singles"
    await store.decide(conversations.engine, asked.id, user="ana", approved=True)
    assert wake(asked.id)
    events = await asyncio.wait_for(task, 30)
    assert ORDERS == ["2 x Black Dog single"]
    assert [e.status for e in events if isinstance(e, ApprovalDoneEvent)] == ["approved"]
    assert any(isinstance(e, ToolResultEvent) and "Ordered 2" in e.result for e in events)
    assert isinstance(events[-1], DoneEvent) and events[-1].stop_reason in ("completed", "max_messages")
    assert "Ordered 2 x Black Dog single." in str(model.requests[-1].messages)  # the model read the result


async def test_a_denial_is_told_to_the_agent_and_nothing_runs(make_chorus: Any, conversations: Any) -> None:
    model = scripted(tool_call("place_order", item="vinyl"), "I did not order it.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = open_session(chorus, conversations)
    task, asked = await turn_until_asked(session, "order the vinyl")
    await store.decide(conversations.engine, asked.id, user="ana", approved=False, reason="too expensive")
    wake(asked.id)
    events = await asyncio.wait_for(task, 30)
    assert ORDERS == []
    told = str(model.requests[-1].messages)
    assert "Not run: the user denied place_order" in told and "too expensive" in told
    assert [e.status for e in events if isinstance(e, ApprovalDoneEvent)] == ["denied"]


async def test_an_answer_from_another_process_reaches_the_waiting_call(make_chorus: Any, conversations: Any) -> None:
    """A second worker or the runs API answers through the database: no wake-up in this process."""
    model = scripted(tool_call("place_order", item="cd"), "Ordered.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = open_session(chorus, conversations)
    task, asked = await turn_until_asked(session, "order a cd")
    await store.decide(conversations.engine, asked.id, user="ana", approved=True)
    await asyncio.wait_for(task, 30)
    assert ORDERS == ["1 x cd"]


async def test_no_answer_in_time_counts_as_a_denial(make_chorus: Any, conversations: Any) -> None:
    model = scripted(tool_call("place_order", item="tape"), "Not ordered.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = open_session(chorus, conversations, timeout_s=1.0)
    events = [e async for e in run_turn(session, "order a tape")]
    assert ORDERS == []
    assert [e.status for e in events if isinstance(e, ApprovalDoneEvent)] == ["expired"]
    told = str(model.requests[-1].messages)
    assert "Not run: place_order" in told and "without an answer, which counts as a denial" in told
    asked = next(e for e in events if isinstance(e, ApprovalEvent))
    with pytest.raises(ApprovalError, match="already expired"):
        await store.decide(conversations.engine, asked.id, user="ana", approved=True)


async def test_a_channel_that_cannot_ask_refuses_the_call_and_harmless_tools_still_run(make_chorus: Any) -> None:
    model = scripted(tool_call("look_up", item="cd"), tool_call("place_order", item="cd"), "Sorry.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = chorus.open_session("shop")  # no approvals: the CLI's ask, the chat-completions API
    events = [e async for e in run_turn(session, "look up and order a cd")]
    results = [e.result for e in events if isinstance(e, ToolResultEvent)]
    assert results[0] == "cd: in stock."
    assert ORDERS == [] and "can only be given on the chat page" in str(model.requests[-1].messages)


async def test_another_user_cannot_answer_or_see_a_request(make_chorus: Any, conversations: Any) -> None:
    model = scripted(tool_call("place_order", item="lp"), "Ordered.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = open_session(chorus, conversations)
    task, asked = await turn_until_asked(session, "order an lp")
    with pytest.raises(ApprovalError, match="no such approval"):
        await store.decide(conversations.engine, asked.id, user="mallory", approved=True)
    assert await store.get(conversations.engine, asked.id, user="mallory") is None
    assert await store.listed(conversations.engine, user="mallory") == []
    assert ORDERS == []
    await store.decide(conversations.engine, asked.id, user="ana", approved=False)
    wake(asked.id)
    await asyncio.wait_for(task, 30)
    with pytest.raises(ApprovalError, match="already denied"):  # one answer wins
        await store.decide(conversations.engine, asked.id, user="ana", approved=True)


async def test_the_stop_button_withdraws_the_request(make_chorus: Any, conversations: Any) -> None:
    model = scripted(tool_call("place_order", item="lp"), "Ordered.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = open_session(chorus, conversations)
    task, asked = await turn_until_asked(session, "order an lp")
    session.stop()
    events = await asyncio.wait_for(task, 30)
    assert isinstance(events[-1], DoneEvent) and events[-1].stop_reason == "stopped"
    stored = await store.get(conversations.engine, asked.id)
    assert stored is not None and stored.status == "cancelled" and ORDERS == []


@pytest.mark.parametrize("answer", ["approved", "denied"])
async def test_after_a_restart_the_stored_answer_lets_the_request_go_on(
        make_chorus: Any, conversations: Any, answer: str) -> None:
    """The server stops while a request waits; after the restart the user answers it, and the turn that
    goes on with their request acts on that answer without asking again."""
    model = scripted(tool_call("place_order", item="box set"), "First try.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = open_session(chorus, conversations)
    task, asked = await turn_until_asked(session, "order the box set")
    session.stop(keep_progress=True)  # the server stopping (SIGTERM): the request stays pending
    await asyncio.wait_for(task, 30)
    stored = await store.get(conversations.engine, asked.id)
    assert stored is not None and stored.pending

    later = scripted(tool_call("place_order", item="box set"), "Here is the outcome.")
    restarted = make_chorus(plugins=[ShopPlugin()], model=later, teams=[TEAM])
    session = open_session(restarted, conversations)
    assert await session.resume() is not None
    pending = await store.listed(conversations.engine, user="ana", thread_id="t1", status="pending")
    assert [p.id for p in pending] == [asked.id]
    await store.decide(conversations.engine, asked.id, user="ana", approved=answer == "approved")
    assert not wake(asked.id)  # nobody waits for it any more
    events = [e async for e in run_turn(session, stored.request)]
    assert not [e for e in events if isinstance(e, ApprovalEvent)]  # not asked twice
    assert [e.status for e in events if isinstance(e, ApprovalDoneEvent)] == [answer]
    assert (["1 x box set"] if answer == "approved" else []) == ORDERS
    again = await store.get(conversations.engine, asked.id)
    assert again is not None and again.used


async def test_a_reload_takes_the_waiting_request_over(make_chorus: Any, conversations: Any) -> None:
    """A reload opens the conversation in a new session: the old page's turn is stopped, its request
    stays pending for the new page."""
    model = scripted(tool_call("place_order", item="poster"), "x")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    old = open_session(chorus, conversations)
    task, asked = await turn_until_asked(old, "order the poster")
    new = open_session(chorus, conversations)
    assert await detach(new, "t1") == 1
    await asyncio.wait_for(task, 30)
    assert not old.busy
    stored = await store.get(conversations.engine, asked.id)
    assert stored is not None and stored.pending


async def test_team_files_and_mcp_entries_mark_tools_that_need_approval(make_chorus: Any) -> None:
    team = TeamSpec(name="shop", type="round_robin", members=["clerk"], default=True, approvals=["look_up"])
    chorus = make_chorus(plugins=[ShopPlugin()], teams=[team])
    session = chorus.open_session("shop")
    assert session.built is not None
    assert session.built.approvals == {"place_order": ("clerk",), "look_up": ("clerk",)}

    from chorus.teams.spec import McpServerSpec

    assert McpServerSpec(command="x", requires_approval=True).needs_approval("anything")
    listed = McpServerSpec(command="x", requires_approval=["delete"])
    assert listed.needs_approval("delete") and not listed.needs_approval("read")


async def test_the_test_kit_answers_approvals_for_a_plugins_tests(make_chorus: Any) -> None:
    """What docs/plugins.md shows a plugin author: ``run(..., approve=True)``."""
    from chorus.testing import events_of, run

    model = scripted(tool_call("place_order", item="cd"), "Ordered.", tool_call("place_order", item="lp"), "No.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    approved = await run(chorus, "order a cd", approve=True)
    assert ORDERS == ["1 x cd"] and [e.tool for e in events_of(approved, ApprovalEvent)] == ["place_order"]
    denied = await run(chorus, "order an lp", approve=False)
    assert ORDERS == ["1 x cd"] and [e.status for e in events_of(denied, ApprovalDoneEvent)] == ["denied"]


async def test_two_identical_calls_in_one_reply_each_wait_for_their_own_answer(
        make_chorus: Any, conversations: Any) -> None:
    from chorus.models.local import ModelReply, ToolCall

    twice = ModelReply(tool_calls=(ToolCall(name="place_order", arguments={"item": "cd"}),
                                   ToolCall(name="place_order", arguments={"item": "cd"})))
    model = scripted(twice, "Done.")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = open_session(chorus, conversations)
    seen: list[ApprovalEvent] = []

    async def consume() -> list[TurnEvent]:
        events = []
        async for event in run_turn(session, "order a cd, twice"):
            events.append(event)
            if isinstance(event, ApprovalEvent):
                seen.append(event)
                if len(seen) == 1:  # the first is approved, the second denied
                    await store.decide(conversations.engine, event.id, user="ana", approved=True)
                else:
                    await store.decide(conversations.engine, event.id, user="ana", approved=False)
                wake(event.id)
        return events

    events = await asyncio.wait_for(consume(), 30)
    assert len({e.id for e in seen}) == 2  # two requests, not one approval for both
    assert ORDERS == ["1 x cd"]
    assert sorted(e.status for e in events if isinstance(e, ApprovalDoneEvent)) == ["approved", "denied"]


async def test_an_old_answer_no_turn_acted_on_does_not_stand_for_a_later_call(
        make_chorus: Any, conversations: Any) -> None:
    import sqlalchemy as sa

    model = scripted(tool_call("place_order", item="tape"), "x")
    chorus = make_chorus(plugins=[ShopPlugin()], model=model, teams=[TEAM])
    session = open_session(chorus, conversations, timeout_s=30)
    task, asked = await turn_until_asked(session, "order a tape")
    session.stop(keep_progress=True)
    await asyncio.wait_for(task, 30)
    await store.decide(conversations.engine, asked.id, user="ana", approved=True)
    async with conversations.engine.begin() as conn:  # answered long ago, and never acted on
        await conn.execute(sa.text("UPDATE chorus_approvals SET decided_at = :at WHERE id = :id"),
                           {"at": store.now() - timedelta(hours=1), "id": asked.id})
    model.queue(tool_call("place_order", item="tape"), "y")
    task, again = await turn_until_asked(session, "order a tape")  # asked afresh
    assert again.id != asked.id and ORDERS == []
    session.stop()
    await asyncio.wait_for(task, 30)


async def test_an_autogen_tool_a_plugin_hands_over_waits_when_the_team_file_says_so(make_chorus: Any) -> None:
    from autogen_core.tools import FunctionTool

    from chorus.testing import events_of, run

    fired: list[str] = []

    def launch(target: str) -> str:
        """Launch something."""
        fired.append(target)
        return f"launched {target}"

    class RawTools:
        @hookimpl
        def chorus_register_tools(self) -> list[Any]:
            return [FunctionTool(launch, description="Launch something.")]

        @hookimpl
        def chorus_register_agents(self) -> list[AgentSpec]:
            return [AgentSpec(name="pilot", description="Launches.", tools=("launch",))]

    team = TeamSpec(name="ops", type="round_robin", members=["pilot"], default=True,
                    approvals=["launch", "lanuch"])
    model = scripted(tool_call("launch", target="probe"), "Not launched.")
    chorus = make_chorus(plugins=[RawTools()], model=model, teams=[team])
    session = chorus.open_session("ops")
    assert session.built is not None and session.built.approvals == {"launch": ("pilot",)}
    assert any("'lanuch'" in p and "no member has" in p for p in session.built.problems)  # a typo is reported
    events = await run(session, "launch the probe", approve=False)
    assert fired == [] and [e.status for e in events_of(events, ApprovalDoneEvent)] == ["denied"]
