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

from chorus._env import apply_cookie_settings, apply_offline_defaults

apply_offline_defaults()
apply_cookie_settings()

from chorus._version import __version__  # noqa: E402
from chorus.plugins import AgentContext, AgentSpec, ToolContext, ToolSpec, hookimpl, hookspec  # noqa: E402
from chorus.settings import Settings, get_settings  # noqa: E402
from chorus.teams.spec import Starter, TeamSpec, Termination  # noqa: E402

__all__ = [
    "AgentContext",
    "AgentSpec",
    "Settings",
    "Starter",
    "TeamSpec",
    "Termination",
    "ToolContext",
    "ToolSpec",
    "__version__",
    "get_settings",
    "hookimpl",
    "hookspec",
]
