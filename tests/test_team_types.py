"""Team types are modules chosen by name through a registry: the built-in selector and round robin,
one more registered in a few lines, and a team file with an unknown type refused with its file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from autogen_agentchat.base import Team
from autogen_agentchat.teams import RoundRobinGroupChat

from chorus import AgentSpec, hookimpl
from chorus.teams import register_team_type, team_type_names
from chorus.teams.kind import TeamParts
from chorus.teams.registry import unregister_team_type
from chorus.teams.spec import TeamSpec
from chorus.testing import ChorusFactory, ScriptedModel, replies, run


class Duo:
    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name="first", description="Speaks first."),
                AgentSpec(name="second", description="Speaks second.")]


class LastFirst:
    """A type of our own: the members speak in turn, last listed first."""

    name = "last_first"

    def default_max_messages(self, spec: TeamSpec) -> int:
        return 3

    def build(self, parts: TeamParts) -> Team:
        return RoundRobinGroupChat(list(reversed(parts.agents)), termination_condition=parts.termination,
                                   emit_team_events=True)


@pytest.fixture
def last_first() -> Iterator[None]:
    register_team_type(LastFirst())
    try:
        yield
    finally:
        unregister_team_type("last_first")


def _team_file(home: Path, text: str) -> None:
    agents = home / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / "team.yaml").write_text(text, encoding="utf-8")


async def test_a_registered_type_runs_a_team_file(make_chorus: ChorusFactory, last_first: None) -> None:
    assert "last_first" in team_type_names()
    model = ScriptedModel("I am second, so I speak first.", "And I close.")
    chorus = make_chorus(plugins=[Duo()], model=model,
                         teams=[{"name": "pair", "type": "last_first", "members": ["first", "second"]}])
    said = [(m.agent, m.content) for m in replies(await run(chorus, "Hello"))]
    assert said == [("second", "I am second, so I speak first."), ("first", "And I close.")]


async def test_the_built_in_types_keep_their_turn_taking(make_chorus: ChorusFactory) -> None:
    model = ScriptedModel("one", "two")
    chorus = make_chorus(plugins=[Duo()], model=model,
                         teams=[{"name": "pair", "type": "round_robin", "members": ["first", "second"]}])
    assert [m.agent for m in replies(await run(chorus, "Hello"))] == ["first", "second"]
    picked = ScriptedModel("second", "only me")  # the selector's pick, then the agent
    chorus = make_chorus(plugins=[Duo()], model=picked,
                         teams=[{"name": "pair", "type": "selector", "members": ["first", "second"]}])
    assert [(m.agent, m.content) for m in replies(await run(chorus, "Hello"))] == [("second", "only me")]


def test_an_unknown_type_is_refused_with_its_file_and_the_rest_serve(make_chorus: ChorusFactory) -> None:
    chorus = make_chorus(plugins=[Duo()], teams=[
        {"name": "good", "members": ["first"], "default": True},
        {"name": "bad", "type": "pipeline", "members": ["first", "second"]},
    ])
    assert list(chorus.catalog.teams) == ["good"]
    [error] = chorus.catalog.errors
    assert "bad" in error and "unknown type 'pipeline'" in error
    assert "known: graph, iterative, round_robin, selector, sequential" in error
    assert ".yaml" in error  # names the file
