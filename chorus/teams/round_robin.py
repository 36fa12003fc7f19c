"""``type: round_robin``: every member speaks in turn, in the team file's order."""

from __future__ import annotations

from autogen_agentchat.base import Team
from autogen_agentchat.teams import RoundRobinGroupChat

from chorus.teams.kind import BaseTeamType, TeamParts
from chorus.teams.spec import TeamSpec


class RoundRobin(BaseTeamType):
    name = "round_robin"

    def default_max_messages(self, spec: TeamSpec) -> int:
        # Everyone speaks once after the user; a team of every agent ("*") answers once.
        return len(spec.members) + 1 if "*" not in spec.members else 2

    def build(self, parts: TeamParts) -> Team:
        return RoundRobinGroupChat(parts.agents, termination_condition=parts.termination, emit_team_events=True)
