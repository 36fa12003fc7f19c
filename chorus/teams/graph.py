"""``type: graph``: members speak along the team file's edges (AutoGen's GraphFlow).

An edge goes from one member to one or more others (a fan-out); several edges into one member make
it wait for all of them (a join; ``activation: any`` waits for the first). An edge with ``when``
is taken only when the source's message contains that text, which is how a graph loops (a judge
sends the work back while it says ``REVISE``) and ends (a message without it stops there). A
member with a conditional edge must have only conditional edges, and every loop needs one: a
graph that could loop forever is refused at load, as is an edge to a member not in the team.
The turn ends when no member is left to speak, or at ``max_messages``; every message starts the
graph from its start.
"""

from __future__ import annotations

from autogen_agentchat.base import ChatAgent, Team
from autogen_agentchat.teams import DiGraph
from autogen_agentchat.teams._group_chat._graph._digraph_group_chat import DiGraphEdge, DiGraphNode

from chorus.teams._from_the_start import GraphFlowFromTheStart
from chorus.teams.kind import BaseTeamType, TeamParts
from chorus.teams.spec import TeamFieldError, TeamSpec


def graph_of(spec: TeamSpec, members: list[str] | None = None) -> DiGraph:
    """The team file's graph over ``members`` (default: the team's), validated by AutoGen."""
    names = members if members is not None else spec.members
    edges: dict[str, list[DiGraphEdge]] = {name: [] for name in names}
    for edge in spec.edges:
        if edge.source not in edges:
            continue
        for target in edge.to:
            if target in edges:
                edges[edge.source].append(DiGraphEdge(target=target, condition=edge.when,
                                                      activation_condition=edge.activation))
    nodes = {name: DiGraphNode(name=name, edges=edges[name]) for name in names}
    graph = DiGraph(nodes=nodes)
    if not graph.get_start_nodes():  # every member has a way in: a loop; start where the file says
        start = spec.start if spec.start in names else names[0]  # (a member that failed to build is left out)
        graph = DiGraph(nodes=nodes, default_start_node=start)
    graph.graph_validate()
    graph.has_cycles_with_exit()  # raises for a loop without a condition
    return graph


def agents_of(parts: TeamParts, kind: str) -> list[ChatAgent]:
    """The built members, which GraphFlow needs to be agents (not nested teams)."""
    agents = [a for a in parts.agents if isinstance(a, ChatAgent)]
    if len(agents) != len(parts.agents):
        raise TypeError(f"a {kind} team's members must be agents, not teams")
    return agents


class Graph(BaseTeamType):
    name = "graph"

    def default_max_messages(self, spec: TeamSpec) -> int:
        # Every member once a pass; a graph with conditions (every loop has one) gets max_iterations
        # passes. The graph usually ends before: when no member is left to speak.
        passes = spec.max_iterations if any(e.when for e in spec.edges) else 1
        return 1 + len(spec.members) * passes

    def steps(self, spec: TeamSpec) -> int | None:
        return len(spec.members)  # one pass; a loop goes on past it ("step 6: writer")

    def check(self, spec: TeamSpec) -> None:
        if "*" in spec.members or len(set(spec.members)) != len(spec.members):
            raise TeamFieldError("members", f"team {spec.name!r}: a graph team names each member once ('*' is "
                                            "not allowed)")
        if not spec.edges:
            raise TeamFieldError("edges", f"team {spec.name!r}: a graph team needs edges (from: a, to: b)")
        for edge in spec.edges:
            outside = [n for n in (edge.source, *edge.to) if n not in spec.members]
            if outside:
                raise TeamFieldError("edges", f"team {spec.name!r}: the edge from {edge.source!r} names "
                                              f"{', '.join(map(repr, outside))}, not members of the team")
        if spec.start is not None and spec.start not in spec.members:
            raise TeamFieldError("start", f"team {spec.name!r}: start {spec.start!r} is not a member")
        try:
            graph_of(spec)
        except ValueError as exc:
            raise TeamFieldError("edges", f"team {spec.name!r}: {exc}") from None

    def build(self, parts: TeamParts) -> Team:
        agents = agents_of(parts, "graph")
        graph = graph_of(parts.spec, [a.name for a in agents])  # members that failed to build are left out
        return GraphFlowFromTheStart(agents, graph=graph, termination_condition=parts.termination)
