"""The hooks a Chorus plugin can implement.

A plugin is a module (or object) with functions decorated by
``chorus.hookimpl`` whose names match the specifications below. Chorus calls
each hook once per plugin when it loads plugins (at start-up, and once for
``chorus plugins`` and ``chorus ask``); a hook that raises marks only its own
plugin as failed, whatever it raises (``SystemExit`` and ``KeyboardInterrupt``
included: plugin code never ends the process).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from autogen_core.tools import BaseTool

    from chorus.plugins._specs import AgentSpec, ToolSpec
    from chorus.settings import Settings
    from chorus.teams.spec import TeamSpec

PROJECT = "chorus"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def chorus_register_tools(settings: Settings) -> Sequence[ToolSpec | BaseTool[Any, Any] | Callable[..., Any]]:
    """Offer tools that agents can call.

    Called: once per plugin load, before ``chorus_register_agents``.
    Receives: ``settings``, the process's :class:`chorus.Settings` (optional
    argument: declare it only if you need it).
    Returns: a sequence of :class:`chorus.ToolSpec`, AutoGen tools, or plain
    typed functions (their name, docstring and annotations describe them).
    Tool names are global: a second tool with a taken name is reported and
    skipped.
    """
    raise NotImplementedError


@hookspec
def chorus_register_agents(settings: Settings) -> Sequence[AgentSpec]:
    """Offer agents that teams can use.

    Called: once per plugin load, after every plugin's tools are registered.
    Receives: ``settings`` (optional argument).
    Returns: a sequence of :class:`chorus.AgentSpec`. Agents are built later,
    once per chat session, from the spec's factory (or the default assistant);
    a factory that raises is reported and that agent is left out of the team.
    """
    raise NotImplementedError


@hookspec
def chorus_register_embedders(settings: Settings) -> Mapping[str, Callable[[], Any]]:
    """Offer embedding functions for memory and the knowledge base.

    Called: once per plugin load, after agents.
    Receives: ``settings`` (optional argument).
    Returns: a mapping of name to a factory that returns a Chroma embedding function
    (a ``chromadb.EmbeddingFunction``). ``CHORUS_EMBEDDING=<name>`` selects it; the factory is
    called once, when memory or knowledge is first used. Register the class with Chroma's
    ``@register_embedding_function`` so a collection reopened later rebuilds it. Each embedder
    gets collections of its own, so switching embedders never mixes vectors; re-ingest after.
    """
    raise NotImplementedError


@hookspec
def chorus_register_team_types(settings: Settings) -> Sequence[Any]:
    """Offer team types: new ways for a team's members to take turns (``type:`` in a team file).

    Called: once per plugin load, after embedders and before teams.
    Receives: ``settings`` (optional argument).
    Returns: a sequence of team type objects (:class:`chorus.teams.TeamType`): each has a
    ``name``, ``default_max_messages(spec)`` and ``build(parts)``, which returns the AutoGen team;
    ``check``, ``member_role``, ``member_instructions``, ``handoffs``, ``steps``, ``termination``
    and ``stop_notice`` are optional (subclass :class:`chorus.BaseTeamType` for the defaults).
    A name Chorus or another plugin already uses is reported and skipped. Team files and plugin
    teams may then use the type; a type's ``check`` that raises refuses that team, not the load.
    """
    raise NotImplementedError


@hookspec
def chorus_register_teams(settings: Settings) -> Sequence[TeamSpec | Mapping[str, Any]]:
    """Offer teams: each becomes a chat profile in the page (with its starters) and a
    ``--team`` for ``chorus ask``.

    Called: once per plugin load, after agents and embedders.
    Receives: ``settings`` (optional argument).
    Returns: a sequence of :class:`chorus.TeamSpec`, or mappings with the same fields as a
    team YAML file (``agents/README.md``). A team file of the deployment with the same name
    wins over a plugin's team, so operators can change it; a second plugin team with a taken
    name is reported and skipped. Members are agent names from any plugin; give a team's
    specialists ``team_only=True`` to keep them out of the teams that take every agent.
    """
    raise NotImplementedError
