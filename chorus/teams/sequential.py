"""``type: sequential``: a pipeline: each member once, in the team file's order.

Each member sees what the ones before it said (the user's message, then every earlier step), so a
researcher's notes reach the planner, the plan reaches the coder, and so on. It runs on AutoGen's
GraphFlow with one edge from each member to the next. Every message starts the pipeline at its
first step; a turn that ends part-way (``max_messages``, a budget, the stop button) ends there.
"""

from __future__ import annotations

import itertools

from autogen_agentchat.base import ChatAgent, Team
from autogen_agentchat.teams import DiGraph, DiGraphBuilder

from chorus.teams._from_the_start import GraphFlowFromTheStart
from chorus.teams.kind import BaseTeamType, TeamParts
from chorus.teams.spec import TeamFieldError, TeamSpec


def chain(agents: list[ChatAgent]) -> DiGraph:
    """The graph in which each agent speaks once, after the one before it."""
    builder = DiGraphBuilder()
    for agent in agents:
        builder.add_node(agent)
    for earlier, later in itertools.pairwise(agents):
        builder.add_edge(earlier, later)
    builder.set_entry_point(agents[0])
    return builder.build()


class Sequential(BaseTeamType):
    name = "sequential"

    def default_max_messages(self, spec: TeamSpec) -> int:
        return len(spec.members) + 1 if "*" not in spec.members else 50  # every step once

    def check(self, spec: TeamSpec) -> None:
        if len(set(spec.members)) != len(spec.members):
            raise TeamFieldError("members", f"team {spec.name!r}: a sequential team lists each member once "
                                            "(a step that runs twice is an iterative or graph team)")

    def build(self, parts: TeamParts) -> Team:
        agents = [a for a in parts.agents if isinstance(a, ChatAgent)]
        if len(agents) != len(parts.agents):
            raise TypeError("a sequential team's members must be agents, not teams")
        return GraphFlowFromTheStart(agents, graph=chain(agents), termination_condition=parts.termination)
