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

    from chorus.plugins._guards import GuardCheck, Verdict
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


@hookspec
def chorus_check_input(text: str, check: GuardCheck, settings: Settings) -> Verdict | None:
    """Check what goes into the models: the user's message, and each tool's result.

    Called: for every user message before the team sees it (``check.stage == "message"``), and for
    every tool result before the model reads it (``"tool_result"``, ``check.tool`` names the tool),
    in every turn on the page, the widget, the API, background runs and ``chorus ask``.
    Receives: ``text``; ``check`` (:class:`chorus.GuardCheck`: the stage, user, conversation, team,
    tool); ``settings``. Declare only the arguments you need.
    Returns: None or ``Verdict.allow()`` to let it through; ``Verdict.block(reason)`` to refuse it
    (a message is not answered and the user sees the reason; a tool result is replaced by a note
    saying it was withheld); ``Verdict.rewrite(text)`` to change it (redact, or mark it as data).
    Guards run in plugin order, each on the text the one before left; a guard that raises blocks
    the text. May be ``async``.
    """
    raise NotImplementedError


@hookspec
def chorus_check_output(text: str, check: GuardCheck, settings: Settings) -> Verdict | None:
    """Check what the turn shows, stores and traces: each agent's reply and each tool's result.

    Called: for each agent's reply once it is complete (``check.stage == "reply"``, ``check.agent``
    and its ``check.system_message``), before any of it reaches the page, the API, the stored
    conversation or the trace; while any output guard is on, replies are shown whole once checked
    instead of streamed. And for each tool result as the page shows it (``"tool_result"``; the
    model has read it already).
    Receives and returns as ``chorus_check_input``; a blocked reply is replaced by a note with the
    reason, in the agent's name.
    """
    raise NotImplementedError
