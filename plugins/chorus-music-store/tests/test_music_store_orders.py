"""Buying a track: the customer approves each order on the page before it is placed (Chorus's
approvals), and the orders live in the plugin's own file in the data directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

from music_store_fixtures import STORE_PLUGINS

from chorus.approvals import Approvals
from chorus.events import ApprovalEvent, TurnEvent
from chorus.store import approvals as approval_store
from chorus.testing import ChorusFactory, checkpoint_store, last_reply
from chorus.turn import ChatSession, run_turn
from chorus.turn.approving import wake


async def say(session: ChatSession, text: str, answer: bool | None = None) -> list[TurnEvent]:
    """A turn; each approval it asks for is answered ``answer`` (True: approve) as the page would."""
    events: list[TurnEvent] = []
    async for event in run_turn(session, text):
        events.append(event)
        if isinstance(event, ApprovalEvent):
            assert answer is not None, f"an approval was asked: {event}"
            assert session.approvals is not None
            await approval_store.decide(session.approvals.engine, event.id, user=session.user_id, approved=answer)
            wake(event.id)
    return events


def test_an_order_is_placed_only_once_the_customer_approves(make_chorus: ChorusFactory, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with checkpoint_store(tmp_path / "db") as conversations:
            chorus = make_chorus(installed=STORE_PLUGINS)
            session = chorus.open_session("music-store", user_id="ana", checkpoints=conversations)
            session.approvals = Approvals(conversations.engine, timeout_s=60)
            await say(session, "My email is ana.souza@example.com")

            denied = await say(session, "Buy the song Black Dog", answer=False)
            assert "Not run: the user denied order_track" in last_reply(denied).content
            assert "ordered anything" in last_reply(await say(session, "What did I order?")).content

            asked = [e for e in await say(session, "Buy the song Black Dog", answer=True)]
            approvals = [e for e in asked if isinstance(e, ApprovalEvent)]
            assert [(a.agent, a.tool, a.arguments) for a in approvals] == [
                ("invoices", "order_track", {"title": "Black Dog"})]
            assert "Order **1** is placed" in last_reply(asked).content and "Black Dog" in last_reply(asked).content
            listed = last_reply(await say(session, "What did I order?")).content
            assert "| 1 | Black Dog |" in listed
            assert (chorus.settings.home / "music_store_orders.sqlite").is_file()

    asyncio.run(scenario())


def test_without_a_way_to_ask_nothing_is_ordered(make_chorus: ChorusFactory) -> None:
    async def scenario() -> None:
        chorus = make_chorus(installed=STORE_PLUGINS)
        session = chorus.open_session("music-store", user_id="ana")  # as `chorus ask` or the completions API
        await say(session, "My email is ana.souza@example.com")
        reply = last_reply(await say(session, "Buy the song Black Dog")).content
        assert "Not run" in reply and "can only be given on the chat page" in reply
        assert "ordered anything" in last_reply(await say(session, "What did I order?")).content

    asyncio.run(scenario())
