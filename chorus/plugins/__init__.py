"""Plugins: hook specifications, the specs plugins return, and the loader."""

from __future__ import annotations

from chorus.plugins._guards import GuardCheck, Verdict
from chorus.plugins._specs import AgentContext, AgentFactory, AgentSpec, ToolContext, ToolSpec
from chorus.plugins.hookspecs import hookimpl, hookspec
from chorus.plugins.manager import (
    DEFAULT_PLUGINS,
    ENTRY_POINT_GROUP,
    PluginLoader,
    PluginReport,
    Registry,
    load_plugins,
)

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "AgentContext",
    "AgentFactory",
    "AgentSpec",
    "GuardCheck",
    "PluginLoader",
    "PluginReport",
    "Registry",
    "ToolContext",
    "ToolSpec",
    "Verdict",
    "hookimpl",
    "hookspec",
    "load_plugins",
]
