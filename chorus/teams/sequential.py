"""``type: sequential``: a pipeline: each member once, in the team file's order.

Each member sees what the ones before it said (the user's message, then every earlier step), so a
researcher's notes reach the planner, the plan reaches the coder, and so on. It is a graph
(:mod:`chorus.teams.graph`) with one edge from each member to the next. Every message starts the pipeline at its
first step; a turn that ends part-way (``max_messages``, a budget, the stop button) ends there.
A pipeline interrupted by a restart keeps its finished steps and can go on from the next one
(:mod:`chorus.turn.pipeline`).
"""

from __future__ import annotations

import itertools

from autogen_agentchat.base import Team

from chorus.teams._from_the_start import Pipeline

__all__ = ["Pipeline", "Sequential"]
from chorus.teams.graph import agents_of, graph_of
from chorus.teams.kind import BaseTeamType, TeamParts
from chorus.teams.spec import GraphEdge, TeamFieldError, TeamSpec


class Sequential(BaseTeamType):
    name = "sequential"

    def default_max_messages(self, spec: TeamSpec) -> int:
        return len(spec.members) + 1 if "*" not in spec.members else 50  # every step once

    def steps(self, spec: TeamSpec) -> int | None:
        return None if "*" in spec.members else len(spec.members)

    def check(self, spec: TeamSpec) -> None:
        if len(set(spec.members)) != len(spec.members):
            raise TeamFieldError("members", f"team {spec.name!r}: a sequential team lists each member once "
                                            "(a step that runs twice is an iterative or graph team)")

    def build(self, parts: TeamParts) -> Team:
        agents = agents_of(parts, "sequential")
        names = [agent.name for agent in agents]
        # A graph with one edge from each member to the next.
        edges = [GraphEdge(source=earlier, to=[later]) for earlier, later in itertools.pairwise(names)]
        chain = parts.spec.model_copy(update={"edges": edges})
        return Pipeline(agents, graph=graph_of(chain, names), termination_condition=parts.termination)
