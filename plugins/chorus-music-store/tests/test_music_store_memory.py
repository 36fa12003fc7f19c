"""The store's recommendations use the user's memories, whoever saved them and however they are
phrased (issue 15: "My favourite artist is Miles Davis", saved by the assistant, was recalled in
the Music store and then ignored)."""

from __future__ import annotations

import chorus_music_store as plugin
import pytest
from music_store_fixtures import STORE_PLUGINS

from chorus.testing import Chorus, ChorusFactory, RetrievalEvent, ToolCallEvent, replies, run


@pytest.fixture
def chorus_(make_chorus: ChorusFactory, monkeypatch: pytest.MonkeyPatch) -> Chorus:
    monkeypatch.delenv(plugin.URL_SETTING, raising=False)  # the demo store
    return make_chorus(installed=[*STORE_PLUGINS, "librarian"], memory=True)


async def test_a_memory_saved_by_the_assistant_shapes_the_stores_recommendations(chorus_: Chorus) -> None:
    # Saved in the default team, by the assistant, in the user's own words.
    saved = await run(chorus_.open_session(user_id="ana"), "My favourite artist is Miles Davis.")
    assert any(isinstance(e, ToolCallEvent) and e.name == "remember" for e in saved)

    for ask in ("Recommend something", "what should I listen to?"):
        events = await run(chorus_.open_session("music-store", user_id="ana"), ask)
        text = replies(events)[-1].content
        assert replies(events)[-1].agent == "catalog"
        assert "Because you like **Miles Davis**" in text and "by Miles Davis" in text, text
        assert "best sellers" not in text
        assert any(isinstance(e, RetrievalEvent) and "Miles Davis" in " ".join(e.items) for e in events)


async def test_every_phrasing_of_a_taste_counts_and_dislikes_do_not(chorus_: Chorus) -> None:
    assert chorus_.memory is not None
    memory = chorus_.memory.for_user("ben")
    assert memory is not None
    await memory.remember("Ben listens to a lot of Led Zeppelin, but he can't stand Queen.")
    await memory.remember("Ben's go-to genre is jazz; he's a big fan of it.")
    await memory.remember("Ben lives in Bergen and works as a nurse.")
    events = await run(chorus_.open_session("music-store", user_id="ben"), "Recommend something")
    text = replies(events)[-1].content
    assert "Because you like **Led Zeppelin**" in text and "by Led Zeppelin" in text, text
    assert "(Jazz," in text and "by Queen" not in text and "Queen" not in text.split("Because")[1].split("\n")[0]

    # A user with no taste in memory still gets the store's best sellers, and an invitation.
    events = await run(chorus_.open_session("music-store", user_id="nobody"), "Recommend something")
    assert "best sellers" in replies(events)[-1].content


async def test_the_default_team_points_a_music_request_to_the_store(chorus_: Chorus) -> None:
    """Issue 15: in the default team, "Can you recommend some music for me?" recited the memory and
    recommended nothing. The default team has no catalog: it says which team has one."""
    assert chorus_.memory is not None
    memory = chorus_.memory.for_user("cleo")
    assert memory is not None
    await memory.remember("My favourite artist is Miles Davis.")
    ask = "Can you recommend some music for me?"

    answer = replies(await run(chorus_.open_session(user_id="cleo"), ask))[-1].content
    assert "**Music store** team" in answer and "--team music-store" in answer, answer
    assert "My favourite artist is Miles Davis." in answer  # what the store will go on

    answer = replies(await run(chorus_.open_session("music-store", user_id="cleo"), ask))[-1].content
    assert "Because you like **Miles Davis**" in answer, answer

    # What the default team answers itself is not sent elsewhere, and the store sends back the rest.
    time = replies(await run(chorus_.open_session(user_id="cleo"), "What time is it in Tokyo?"))[-1].content
    assert "Asia/Tokyo" in time and "team menu" not in time
    away = replies(await run(chorus_.open_session("music-store", user_id="cleo"), "What time is it in Tokyo?"))
    assert "**Chorus** team" in away[-1].content and "assistant" in away[-1].content
    joke = replies(await run(chorus_.open_session(user_id="cleo"), "Tell me a joke"))[-1].content
    assert "team menu" not in joke and "can't answer" in joke
