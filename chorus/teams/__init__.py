"""Teams: YAML specs and the AutoGen teams built from them."""

from __future__ import annotations

from chorus.teams.build import SELECTOR_PROMPT, BuiltTeam, TeamBuildError, build_agent, build_team, default_agent
from chorus.teams.spec import DEFAULT_TEAM, AgentOverride, Starter, TeamCatalog, TeamSpec, Termination, load_teams

__all__ = [
    "DEFAULT_TEAM",
    "SELECTOR_PROMPT",
    "AgentOverride",
    "BuiltTeam",
    "Starter",
    "TeamBuildError",
    "TeamCatalog",
    "TeamSpec",
    "Termination",
    "build_agent",
    "build_team",
    "default_agent",
    "load_teams",
]
