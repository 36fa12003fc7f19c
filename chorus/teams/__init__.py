"""Teams: YAML specs and the AutoGen teams built from them.

The specs (``chorus.teams.spec``) import nothing heavy, so ``import chorus`` can offer
:class:`TeamSpec` to plugins; the builders (``chorus.teams.build``, which imports AutoGen)
load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chorus.teams.spec import DEFAULT_TEAM, AgentOverride, Starter, TeamCatalog, TeamSpec, Termination, load_teams

if TYPE_CHECKING:
    from chorus.teams.build import (
        SELECTOR_PROMPT,
        BuiltTeam,
        TeamBuildError,
        build_agent,
        build_team,
        default_agent,
    )

_BUILD = {"SELECTOR_PROMPT", "BuiltTeam", "TeamBuildError", "build_agent", "build_team", "default_agent"}


def __getattr__(name: str) -> Any:
    if name in _BUILD:
        from chorus.teams import build

        return getattr(build, name)
    raise AttributeError(f"module 'chorus.teams' has no attribute {name!r}")


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
