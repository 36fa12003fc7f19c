"""Chorus: a chat application in which a team of AI agents answers the user.

This module is the public API plugin authors import from::

    from chorus import AgentSpec, ToolSpec, hookimpl

    @hookimpl
    def chorus_register_tools():
        return [ToolSpec(func=my_tool, keywords=("weather",))]

    @hookimpl
    def chorus_register_agents():
        return [AgentSpec(name="forecaster", description="Answers weather questions.", tools=("my_tool",))]

    @hookimpl
    def chorus_register_teams():  # optional: a chat profile of your own
        return [TeamSpec(name="weather", members=["forecaster"], starters=[...])]

Everything else (``chorus.turn``, ``chorus.models``, ``chorus.teams``) is
importable too, but only the names below are promised to stay stable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chorus._env import apply_cookie_settings, apply_offline_defaults

apply_offline_defaults()
apply_cookie_settings()

from chorus._version import __version__  # noqa: E402
from chorus.attachments import Attachment, split_attachments  # noqa: E402
from chorus.plugins import (  # noqa: E402
    AgentContext,
    AgentSpec,
    GuardCheck,
    ToolContext,
    ToolSpec,
    Verdict,
    hookimpl,
    hookspec,
)
from chorus.produced import ProducedFile, files_in  # noqa: E402
from chorus.settings import Settings, get_settings  # noqa: E402
from chorus.teams.spec import Starter, TeamFieldError, TeamSpec, Termination  # noqa: E402

if TYPE_CHECKING:
    from chorus.teams.kind import BaseTeamType, TeamParts


def __getattr__(name: str) -> Any:
    """The team type base (it imports AutoGen): loaded on first use, so ``import chorus`` stays quick."""
    if name in ("BaseTeamType", "TeamParts"):
        from chorus.teams import kind

        return getattr(kind, name)
    raise AttributeError(f"module 'chorus' has no attribute {name!r}")


__all__ = [
    "AgentContext",
    "AgentSpec",
    "Attachment",
    "BaseTeamType",
    "GuardCheck",
    "ProducedFile",
    "Settings",
    "Starter",
    "TeamFieldError",
    "TeamParts",
    "TeamSpec",
    "Termination",
    "ToolContext",
    "ToolSpec",
    "Verdict",
    "__version__",
    "files_in",
    "get_settings",
    "hookimpl",
    "hookspec",
    "split_attachments",
]
