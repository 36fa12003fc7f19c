"""Team specs -> AutoGen teams, with every member built from its plugin's spec."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from autogen_agentchat.base import ChatAgent, Handoff, Team, TerminationCondition
from autogen_agentchat.conditions import ExternalTermination, MaxMessageTermination, TextMentionTermination
from autogen_core.memory import Memory
from autogen_core.tools import BaseTool

from chorus.mcp import McpHub
from chorus.mcp.tools import tools_of
from chorus.models import CallRecord, ChorusModelClient, ModelHints
from chorus.models.local import OtherTeam
from chorus.plugins._specs import AgentContext, AgentSpec, ToolContext
from chorus.plugins.manager import Registry
from chorus.settings import OFFLINE_MODEL, Settings
from chorus.teams.kind import TeamParts, TeamType
from chorus.teams.registry import team_type
from chorus.teams.spec import TeamSpec

log = logging.getLogger(__name__)

class TeamBuildError(RuntimeError):
    """The team cannot be built at all (no member could be built)."""


@dataclass
class BuiltTeam:
    """An AutoGen team ready to run, and what went wrong while building it."""

    spec: TeamSpec
    team: Team
    members: list[AgentSpec]
    clients: dict[str, ChorusModelClient]
    stop: ExternalTermination
    problems: list[str] = field(default_factory=list)
    approvals: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The tools whose calls wait for the user's approval (chorus.approvals), each with the members
    that hold it."""

    @property
    def models(self) -> set[str]:
        return {c.model for c in self.clients.values()}


def resolve_members(spec: TeamSpec, registry: Registry) -> tuple[list[AgentSpec], list[str]]:
    """The team's members as effective agent specs (overrides applied), and problems."""
    problems: list[str] = []
    names: list[str] = []
    for member in spec.members:
        if member == "*":
            names.extend(n for n, a in registry.agents.items() if n not in names and not a.team_only)
            names.extend(n for n in spec.agents if n not in names and n not in registry.agents)
        elif member not in names:
            names.append(member)
    members: list[AgentSpec] = []
    for name in names:
        override = spec.agents.get(name)
        base = registry.agents.get(name)
        if base is None:
            if override is None or not (override.description and override.system_message):
                problems.append(
                    f"team {spec.name!r}: agent {name!r} is not registered by any loaded plugin "
                    "(is its plugin installed and allowed by CHORUS_PLUGINS?)"
                )
                continue
            base = AgentSpec(name=name, description=override.description, plugin=f"team:{spec.name}")
        if override is not None:
            missing = [t for t in override.tools or [] if t not in registry.tools]
            if missing:
                problems.append(f"team {spec.name!r}: agent {name!r} uses unknown tools {missing}")
            base = replace(
                base,
                description=override.description or base.description,
                system_message=override.system_message or base.system_message,
                model=override.model or base.model,
                temperature=override.temperature if override.temperature is not None else base.temperature,
                tools=tuple(t for t in override.tools if t in registry.tools)
                if override.tools is not None
                else base.tools,
                keywords=(*base.keywords, *override.keywords),
            )
        members.append(base)
    return members, problems


def termination_for(spec: TeamSpec, stop: ExternalTermination, kind: TeamType) -> TerminationCondition:
    """The team's termination, always combined with the stop button's external one."""
    max_messages = spec.termination.max_messages
    if max_messages is None:  # the type's own: one answer for a selector, everyone once in a round robin
        max_messages = kind.default_max_messages(spec)
    condition: TerminationCondition = MaxMessageTermination(max_messages) | stop
    if spec.termination.text_mention:
        condition = condition | TextMentionTermination(spec.termination.text_mention)
    own = kind.termination(spec)  # an iterative team's approval, say
    if own is not None:
        condition = condition | own
    return condition


def build_team(
    spec: TeamSpec,
    registry: Registry,
    settings: Settings,
    *,
    on_call: Callable[[CallRecord], None] | None = None,
    stream: bool = True,
    tool_context: ToolContext | None = None,
    memories: list[Memory] | None = None,
    on_notice: Callable[[str], None] | None = None,
    other_teams: Sequence[TeamSpec] = (),
    on_failure: Callable[[str, BaseException], None] | None = None,
    mcp: McpHub | None = None,
    personal: tuple[str, str] | None = None,
) -> BuiltTeam:
    """Build the AutoGen team for ``spec``; members that fail are left out and reported.

    ``tool_context`` is bound into the tools that ask for it; ``memories`` go to every agent.
    ``other_teams`` are the teams the user could switch to: the offline model points a question
    this team cannot answer to the one that can. ``mcp`` gives the members the tools of the team's
    MCP servers, as far as they are known (``McpHub.connect`` first, to wait for them).
    ``personal`` (model, key) is a user's own provider key: every member and the selector then call
    that model with that key, and the deployment's fallbacks are not used with it.
    """
    try:
        kind = team_type(spec.type, registry)
    except KeyError as exc:
        raise TeamBuildError(f"team {spec.name!r}: {exc.args[0]}") from None
    members, problems = resolve_members(spec, registry)
    hints_agents = {m.name: m for m in members}
    server_tools, server_specs = _mcp_tools(spec, mcp, [m.name for m in members], problems, registry.tools)
    hint_tools = {**registry.tools, **server_specs} if server_specs else registry.tools
    elsewhere = tuple(
        OtherTeam(name=other.name, title=other.title, agents=tuple(resolve_members(other, registry)[0]))
        for other in other_teams if other.name != spec.name
    )

    def client(model: str, label: str, role: Any = "agent", temperature: float | None = None) -> ChorusModelClient:
        if personal is not None:
            model = personal[0]
        return ChorusModelClient(
            model,
            label=label,
            temperature=temperature,
            hints=ModelHints(role=role, agent=label, team=spec.name, agents=hints_agents, tools=hint_tools,
                             elsewhere=elsewhere, approval=spec.approval),
            api_base=settings.personal_key_api_base if personal is not None else settings.model_api_base,
            api_key=personal[1] if personal is not None else settings.model_api_key,
            timeout=settings.model_timeout,
            first_byte_timeout=settings.model_first_byte_timeout or None,  # 0 = no shorter limit
            stall_timeout=settings.model_stall_timeout or None,
            deadline=settings.model_deadline or None,
            forbid_real_models=settings.forbid_real_models,
            on_call=on_call,
            token_delay=settings.offline_token_delay if model == OFFLINE_MODEL else None,
            fallbacks=settings.fallback_models() if personal is None else (),
            retries=settings.model_retries,
            allowed_fails=settings.model_allowed_fails,
            cooldown_s=settings.model_cooldown,
            degrade_to_offline=settings.degrade_to_offline and personal is None,  # (a bad key of theirs: say so)
            on_notice=on_notice,
            fast_path=settings.model_fast_path,
            on_failure=on_failure,
        )

    agents: list[ChatAgent | Team] = []
    built: list[AgentSpec] = []
    clients: dict[str, ChorusModelClient] = {}
    names = [m.name for m in members]
    for index, member in enumerate(members):
        extra = kind.member_instructions(spec, member.name)  # a reviewer's way to approve, say
        if extra:
            member = members[index] = replace(member, system_message=f"{member.system_message}\n\n{extra}".strip())
        model = member.model or spec.model or settings.model
        model_client = client(model, member.name, kind.member_role(spec, member.name), member.temperature)
        try:
            agent = build_agent(member, model_client, registry, settings, stream=stream,
                                tool_context=tool_context, memories=memories,
                                handoffs=kind.handoffs(spec, member.name, names),
                                extra_tools=server_tools.get(member.name, ()))
        except Exception as exc:
            report = registry.report_for(member.plugin)
            if report is not None:
                report.fail("build", exc)
            problems.append(f"agent {member.name!r} ({member.plugin}) failed to build: {type(exc).__name__}: {exc}")
            continue
        agents.append(agent)
        built.append(member)
        clients[member.name] = model_client

    kept = [m.name for m in built]
    if len(kept) < len(names):  # a member failed to build: nobody may hand the conversation to it
        for index, member in enumerate(built):
            handoffs = kind.handoffs(spec, member.name, kept)
            if len(handoffs) != len(kind.handoffs(spec, member.name, names)):
                agents[index] = build_agent(member, clients[member.name], registry, settings, stream=stream,
                                            tool_context=tool_context, memories=memories, handoffs=handoffs,
                                            extra_tools=server_tools.get(member.name, ()))

    if not agents:
        detail = "; ".join(problems) or "the team has no members"
        raise TeamBuildError(f"team {spec.name!r} has no agent that could be built: {detail}")

    stop = ExternalTermination()
    parts = TeamParts(spec=spec, agents=agents, termination=termination_for(spec, stop, kind), settings=settings,
                      make_client=lambda model, label, role: client(model, label, role), clients=clients)
    team = kind.build(parts)
    for problem in problems:
        log.warning("%s", problem)
    return BuiltTeam(spec=spec, team=team, members=built, clients=clients, stop=stop, problems=problems,
                     approvals=_needing_approval(spec, built, registry, server_tools, problems))


def _needing_approval(spec: TeamSpec, members: Sequence[AgentSpec], registry: Registry,
                      server_tools: Mapping[str, Sequence[BaseTool[Any, Any]]],
                      problems: list[str]) -> dict[str, tuple[str, ...]]:
    """Each tool of the team whose calls wait for approval: its spec says so, the team file lists it
    under ``approvals:``, or its MCP server's entry says so; with the members that hold it. A name
    listed that no member holds is a problem (a typo must not look like a tool under approval)."""
    listed = set(spec.approvals)
    holders: dict[str, list[str]] = {}
    for member in members:
        for name in member.tools:
            tool = registry.tools.get(name)
            if tool is not None and (tool.requires_approval or name in listed):
                holders.setdefault(name, []).append(member.name)
        for mcp_tool in server_tools.get(member.name, ()):
            source = getattr(mcp_tool, "source", None)
            original = getattr(mcp_tool, "tool", "")
            if mcp_tool.name in listed or (source is not None and source.spec.needs_approval(original)):
                holders.setdefault(mcp_tool.name, []).append(member.name)
    for name in sorted(listed - set(holders)):
        problems.append(f"team {spec.name!r}: approvals names {name!r}, which no member has as a tool; "
                        "nothing waits for approval under that name")
    return {name: tuple(agents) for name, agents in holders.items()}


def build_agent(
    spec: AgentSpec,
    model_client: ChorusModelClient,
    registry: Registry,
    settings: Settings,
    *,
    stream: bool = True,
    tool_context: ToolContext | None = None,
    memories: list[Memory] | None = None,
    handoffs: Sequence[Handoff] = (),
    extra_tools: Sequence[BaseTool[Any, Any]] = (),
) -> ChatAgent:
    """One agent from its spec: the plugin's factory, or a streaming AssistantAgent; ``extra_tools``
    (an MCP server's) come after the spec's own."""
    tools = [registry.tools[name].to_autogen(tool_context) for name in spec.tools]
    tools += [t for t in extra_tools if t.name not in spec.tools]
    context = AgentContext(
        name=spec.name,
        description=spec.description,
        system_message=spec.system_message,
        model_client=model_client,
        tools=tools,
        settings=settings,
        stream=stream,
        memory=list(memories or []),
        tool_context=tool_context,
        handoffs=list(handoffs),
    )
    if spec.factory is not None:
        agent = spec.factory(context)
        if not isinstance(agent, ChatAgent):
            raise TypeError(f"factory returned {type(agent).__name__}, not an AutoGen ChatAgent")
        if agent.name != spec.name:
            raise ValueError(f"factory returned an agent named {agent.name!r}, expected {spec.name!r}")
        return agent
    return default_agent(context)


def _mcp_tools(spec: TeamSpec, mcp: McpHub | None, members: list[str], problems: list[str],
               registry_tools: Collection[str] = ()) -> tuple[dict[str, list[BaseTool[Any, Any]]], dict[str, Any]]:
    """The tools of the team's MCP servers, by the member that gets them, and their specs for the
    offline model. A server that is down keeps the tools it listed before (a call starts it again);
    one that never started adds none, and is a problem."""
    by_member: dict[str, list[BaseTool[Any, Any]]] = {}
    specs: dict[str, Any] = {}
    if mcp is None:
        return by_member, specs
    taken = set(registry_tools)
    for source in mcp.sources(spec):
        if source.state == "failed":
            problems.append(f"team {spec.name!r}: MCP server {source.name!r} {source.error}"
                            + ("; its tools are started again on their next call" if source.schemas
                               else "; the team goes on without its tools"))
        elif not source.schemas and source.state != "ready":
            problems.append(f"team {spec.name!r}: MCP server {source.name!r} is {source.state}; "
                            "its tools join new conversations once it is up")
        named: list[str] = []
        tools, offline = tools_of(source, taken, named)
        problems.extend(f"team {spec.name!r}: {line}" for line in named)
        wanted = source.spec.agents
        for name in wanted or ():
            if name not in members:
                problems.append(f"team {spec.name!r}: MCP server {source.name!r} names {name!r}, "
                                "who is not a member")
        for member in members:
            if wanted is None or member in wanted:
                by_member.setdefault(member, []).extend(tools)
        specs.update(offline)
    return by_member, specs


def default_agent(context: AgentContext) -> ChatAgent:
    """The agent Chorus builds when a spec has no factory (:meth:`AgentContext.default_agent`)."""
    return context.default_agent()
