"""Teams: YAML specs and the AutoGen teams built from them.

The specs (``chorus.teams.spec``) import nothing heavy, so ``import chorus`` can offer
:class:`TeamSpec` to plugins; the builders (``chorus.teams.build``, which imports AutoGen)
load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chorus.teams.spec import (
    DEFAULT_TEAM,
    AgentOverride,
    GraphEdge,
    Starter,
    TeamCatalog,
    TeamFieldError,
    TeamSpec,
    Termination,
    load_teams,
)

if TYPE_CHECKING:
    from chorus.teams.build import BuiltTeam, TeamBuildError, build_agent, build_team, default_agent
    from chorus.teams.kind import BaseTeamType, TeamParts, TeamType
    from chorus.teams.registry import check_team, register_team_type, team_type, team_type_names
    from chorus.teams.selector import SELECTOR_PROMPT

# Loaded on first use: they import AutoGen.
_LAZY = {
    "BuiltTeam": "build", "TeamBuildError": "build", "build_agent": "build", "build_team": "build",
    "default_agent": "build", "SELECTOR_PROMPT": "selector", "team_type": "registry",
    "team_type_names": "registry", "register_team_type": "registry", "check_team": "registry",
    "BaseTeamType": "kind", "TeamParts": "kind", "TeamType": "kind",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"chorus.teams.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'chorus.teams' has no attribute {name!r}")


__all__ = [
    "DEFAULT_TEAM",
    "SELECTOR_PROMPT",
    "AgentOverride",
    "BaseTeamType",
    "BuiltTeam",
    "GraphEdge",
    "Starter",
    "TeamBuildError",
    "TeamCatalog",
    "TeamFieldError",
    "TeamParts",
    "TeamSpec",
    "TeamType",
    "Termination",
    "build_agent",
    "build_team",
    "check_team",
    "default_agent",
    "load_teams",
    "register_team_type",
    "team_type",
    "team_type_names",
]
