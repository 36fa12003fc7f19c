"""Buying a track: the customer approves each order before it is placed (Chorus's approvals; the
test kit's ``run(..., approve=...)`` answers for them), and the orders live in the plugin's own file
in the data directory."""

from __future__ import annotations

import asyncio

from music_store_fixtures import STORE_PLUGINS

from chorus.testing import ApprovalEvent, ChorusFactory, events_of, last_reply, run


def test_an_order_is_placed_only_once_the_customer_approves(make_chorus: ChorusFactory) -> None:
    async def scenario() -> None:
        chorus = make_chorus(installed=STORE_PLUGINS)
        session = chorus.open_session("music-store", user_id="ana")
        await run(session, "My email is ana.souza@example.com")

        denied = await run(session, "Buy the song Black Dog", approve=False)
        assert "Not run: the user denied order_track" in last_reply(denied).content
        assert "ordered anything" in last_reply(await run(session, "What did I order?")).content

        bought = await run(session, "Buy the song Black Dog", approve=True)
        assert [(a.agent, a.tool, a.arguments) for a in events_of(bought, ApprovalEvent)] == [
            ("invoices", "order_track", {"title": "Black Dog"})]
        assert "Order **1** is placed" in last_reply(bought).content and "Black Dog" in last_reply(bought).content
        assert "| 1 | Black Dog |" in last_reply(await run(session, "What did I order?")).content
        assert (chorus.settings.home / "music_store_orders.sqlite").is_file()

    asyncio.run(scenario())


def test_without_anyone_to_ask_nothing_is_ordered(make_chorus: ChorusFactory) -> None:
    async def scenario() -> None:
        chorus = make_chorus(installed=STORE_PLUGINS)
        session = chorus.open_session("music-store", user_id="ana")  # as `chorus ask --json` or the completions API
        await run(session, "My email is ana.souza@example.com")
        reply = last_reply(await run(session, "Buy the song Black Dog")).content
        assert "Not run" in reply and "can only be given on the chat page" in reply
        assert "ordered anything" in last_reply(await run(session, "What did I order?")).content

    asyncio.run(scenario())


def test_an_unverified_customer_is_asked_to_verify_and_nothing_is_ordered(make_chorus: ChorusFactory) -> None:
    async def scenario() -> None:
        chorus = make_chorus(installed=STORE_PLUGINS)
        session = chorus.open_session("music-store", user_id="ana")
        reply = last_reply(await run(session, "Buy the song Black Dog", approve=True)).content
        assert "verify who you are" in reply
        await run(session, "My email is ana.souza@example.com")  # verifying does not place the earlier order
        assert "ordered anything" in last_reply(await run(session, "What did I order?")).content

    asyncio.run(scenario())
