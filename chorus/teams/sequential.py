"""``type: sequential``: a pipeline: each member once, in the team file's order.

Each member sees what the ones before it said (the user's message, then every earlier step), so a
researcher's notes reach the planner, the plan reaches the coder, and so on. It runs on AutoGen's
GraphFlow with one edge from each member to the next. A turn stopped part-way (the stop button, a
budget) is rewound like any other; a team file's ``max_messages`` lower than the pipeline's length
ends the turn there, and the next message carries the pipeline on from the next step.
"""

from __future__ import annotations

import itertools

from autogen_agentchat.base import ChatAgent, Team
from autogen_agentchat.teams import DiGraph, DiGraphBuilder, GraphFlow

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
        return GraphFlow(agents, graph=chain(agents), termination_condition=parts.termination)
