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
    assert "known: graph, iterative, round_robin, selector, sequential, swarm" in error
    assert ".yaml" in error  # names the file


class LastFirstPlugin:
    """A plugin that brings the type with the hook, as the plugin guide shows."""

    @hookimpl
    def chorus_register_team_types(self) -> list[object]:
        return [LastFirst()]


class Clashing:
    @hookimpl
    def chorus_register_team_types(self) -> list[object]:
        class Mine(LastFirst):
            name = "swarm"  # Chorus's own
        return [Mine()]


class Broken:
    @hookimpl
    def chorus_register_team_types(self) -> list[object]:
        class NoBuild:
            name = "no_build"

            def default_max_messages(self, spec: TeamSpec) -> int:
                return 2
        return [NoBuild()]


async def test_a_plugin_brings_a_team_type_that_team_files_use(make_chorus: ChorusFactory) -> None:
    model = ScriptedModel("Second, first.", "First, last.")
    chorus = make_chorus(plugins=[Duo(), LastFirstPlugin()], model=model,
                         teams=[{"name": "pair", "type": "last_first", "members": ["first", "second"]}])
    assert "last_first" in team_type_names(chorus.registry) and "last_first" not in team_type_names()
    said = [m.agent for m in replies(await run(chorus, "Hello"))]
    assert said == ["second", "first"]
    # Without the plugin the same file is refused, naming the known types, and the rest serve.
    other = make_chorus(plugins=[Duo()], teams=[{"name": "good", "members": ["first"], "default": True},
                                                {"name": "pair", "type": "last_first", "members": ["first"]}])
    assert list(other.catalog.teams) == ["good"] and "unknown type 'last_first'" in other.catalog.errors[0]


def test_a_team_type_plugin_that_clashes_or_cannot_build_is_reported_and_the_app_serves(
        make_chorus: ChorusFactory) -> None:
    chorus = make_chorus(plugins=[Duo(), Clashing(), Broken()], teams=[
        {"name": "good", "members": ["first"], "default": True},
        {"name": "odd", "type": "no_build", "members": ["first"]}])
    problems = {r.name: r.error or "" for r in chorus.registry.reports if r.status == "error"}
    assert any("team type 'swarm' is already registered" in e for e in problems.values()), problems
    assert any("team type 'no_build' has no build method" in e for e in problems.values()), problems
    assert list(chorus.catalog.teams) == ["good"]
    assert "unknown type 'no_build'" in chorus.catalog.errors[0]
