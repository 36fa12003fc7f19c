"""The picture of a turn (who spoke in what order, who selected or handed over to whom, which tools
ran, how often and how long): the data behind it, the SVG the page shows, the Mermaid text and the
MLflow trace that carry it."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

from chorus import AgentSpec, ToolSpec, hookimpl
from chorus.testing import ChorusFactory, ScriptedModel, done, run, tool_call
from chorus.tracing.picture import PICTURED, TurnPicture, conversation_picture, picture_of


def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: sunny"


class Desk:
    @hookimpl
    def chorus_register_tools(self) -> list[ToolSpec]:
        return [ToolSpec(lookup, name="lookup", description="Look a city up.")]

    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name="front", description="Takes questions."),
                AgentSpec(name="weather", description="Weather.", tools=("lookup",))]


SWARM = {"name": "desk", "type": "swarm", "members": ["front", "weather"], "default": True}
SELECTOR = {"name": "pick", "type": "selector", "members": ["front", "weather"], "default": True}


def _picture(events: list[object], message: str) -> TurnPicture:
    timed = [(i * 1_000_000, e) for i, e in enumerate(events) if isinstance(e, PICTURED)]
    return picture_of(timed, message=message)


async def test_a_swarm_turn_is_drawn_in_order_with_its_handoff_and_tool(make_chorus: ChorusFactory) -> None:
    model = ScriptedModel(tool_call("transfer_to_weather", reason="a weather question"),
                          tool_call("lookup", city="Lisbon"), "Lisbon is sunny.")
    chorus = make_chorus(plugins=[Desk()], model=model, teams=[SWARM])
    events = await run(chorus, "Weather in Lisbon?")
    picture = _picture(events, "Weather in Lisbon?")
    assert picture.participants == ["user", "front", "weather"]
    assert [(a.kind, a.source, a.target) for a in picture.arrows] == [
        ("ask", "user", "front"), ("handoff", "front", "weather"), ("tool", "weather", "weather"),
        ("answer", "weather", "user")]
    assert picture.arrows[1].label == "a weather question"
    assert picture.speakers == ["weather"]
    [use] = picture.tools
    assert (use.agent, use.tool, use.calls, use.errors) == ("weather", "lookup", 1, 0) and use.ms > 0
    summary = picture.summary()
    assert "Spoke: weather" in summary and "front → weather (a weather question)" in summary
    assert "weather called lookup ×1" in summary

    svg = ET.fromstring(picture.svg())  # well-formed, self-contained: no script, no outside reference
    texts = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert {"user", "front", "weather"} <= set(texts)
    assert any("hands over: a weather question" in t for t in texts) and any(t.startswith("lookup (") for t in texts)
    assert "<script" not in picture.svg() and "http://" not in picture.svg().replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    mermaid = picture.mermaid()
    assert mermaid.startswith("sequenceDiagram") and "front->>weather: hands over: a weather question" in mermaid

    # As data it round-trips (the page keeps it in the step's metadata, the trace as an attribute).
    assert TurnPicture.from_dict(picture.to_dict()) == picture


async def test_a_selector_turn_shows_who_was_selected_and_a_conversation_joins_its_turns(
        make_chorus: ChorusFactory) -> None:
    model = ScriptedModel("weather", "Sunny.", "front", "Hello!")
    chorus = make_chorus(plugins=[Desk()], model=model, teams=[SELECTOR])
    session = chorus.open_session()
    first = _picture(await run(session, "Weather?"), "Weather?")
    second = _picture(await run(session, "Hi"), "Hi")
    assert [(a.kind, a.source, a.target) for a in first.arrows] == [
        ("ask", "user", "selector"), ("select", "selector", "weather"), ("answer", "weather", "user")]
    whole = conversation_picture([first, second])
    assert whole.participants == ["user", "selector", "weather", "front"]
    assert whole.speakers == ["weather", "front"]
    assert [a.label for a in whole.arrows if a.kind == "ask"] == ["Weather?", "Hi"]


async def test_the_turns_trace_carries_its_picture(make_chorus: ChorusFactory) -> None:
    from mlflow import MlflowClient

    model = ScriptedModel(tool_call("transfer_to_weather", reason="weather"), "Sunny.")
    chorus = make_chorus(plugins=[Desk()], model=model, teams=[SWARM], tracing=True,
                         home=Path(make_chorus.home) / "traced")
    events = await run(chorus, "Weather?")
    assert chorus.tracer is not None and chorus.tracer.flush(60)
    trace_id = await asyncio.to_thread(chorus.tracer.trace_id_of, done(events).turn_id)
    assert trace_id is not None
    root = next(s for s in MlflowClient(chorus.tracer.uri).get_trace(trace_id).data.spans if s.parent_id is None)
    picture = TurnPicture.from_dict(root.attributes["chorus.turn_map"])
    assert [(a.kind, a.source, a.target) for a in picture.arrows] == [
        ("ask", "user", "front"), ("handoff", "front", "weather"), ("answer", "weather", "user")]
    assert "front->>weather" in root.attributes["chorus.turn_map_mermaid"]


def test_the_conversation_map_leaves_out_the_turns_an_edit_replaced() -> None:
    from chorus.web.pictures import current_branch

    drawn = [("m1", {"n": 1}), ("m2", {"n": 2}), ("m3", {"n": 3}), ("m2", {"n": 4}), ("m5", {"n": 5})]
    # m2 was edited after m3 was answered: m2's old turn and m3's are gone, the edit's turn stands.
    assert [data["n"] for _, data in current_branch(drawn)] == [1, 4, 5]
    assert current_branch([(None, {"n": 1}), (None, {"n": 2})]) == [(None, {"n": 1}), (None, {"n": 2})]
