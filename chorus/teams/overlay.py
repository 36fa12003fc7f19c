"""An admin's changes to a team (the admin page, ``chorus.web.admin``), laid over its team file.

A team's YAML file (or its plugin's team) stays the starting point. An admin's version of the team
is a :class:`TeamPatch`: the whole set of changes the admin wants on top of that file, not the
change of one edit. :func:`apply_patch` lays it over the spec, so a new conversation is built from
the result; :func:`effective` describes what the team then is (members, prompts, models, tools)
for the page, and :func:`describe` the same as YAML text, which the versions' diffs compare.

Versions themselves are stored by :mod:`chorus.store.team_versions`; which version is current in
this process is :class:`Overlays`'s business (``Chorus.team`` asks it).
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.plugins.manager import Registry
from chorus.store import team_versions
from chorus.teams.build import resolve_members
from chorus.teams.registry import check_team
from chorus.teams.spec import AgentOverride, TeamSpec, Termination

log = logging.getLogger("chorus.teams")


class AgentPatch(BaseModel):
    """An admin's settings for one member; ``None`` keeps the team file's."""

    model_config = ConfigDict(extra="forbid")
    system_message: str | None = Field(default=None, max_length=20_000)
    model: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    tools: list[str] | None = None
    """The tools the agent has (all of them named; an empty list takes every tool away)."""


class TeamPatch(BaseModel):
    """An admin's version of a team, on top of its file."""

    model_config = ConfigDict(extra="forbid")
    members: list[str] | None = None
    """The members, in order (``None`` keeps the file's)."""
    disabled_agents: list[str] = Field(default_factory=list)
    disabled_tools: list[str] = Field(default_factory=list)
    disabled_plugins: list[str] = Field(default_factory=list)
    """Plugins whose agents and tools this team does without."""
    termination: Termination | None = None
    agents: dict[str, AgentPatch] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return self == TeamPatch()


class PatchError(ValueError):
    """A patch that cannot apply to its team; the message says what is wrong."""


def parse_patch(data: Any) -> TeamPatch:
    try:
        return TeamPatch.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PatchError(f"{where}: {first['msg']}" if where else str(first["msg"])) from None


def _plugin_parts(registry: Registry, plugins: list[str]) -> tuple[set[str], set[str]]:
    agents: set[str] = set()
    tools: set[str] = set()
    for report in registry.reports:
        if report.name in plugins:
            agents.update(report.agents)
            tools.update(report.tools)
    return agents, tools


def apply_patch(spec: TeamSpec, patch: TeamPatch, registry: Registry) -> TeamSpec:
    """``spec`` with ``patch`` laid over it; :class:`PatchError` when it names what is not there."""
    if patch.is_empty():
        return spec
    # Plugins and tools switched off that are gone since (uninstalled) are off anyway: no error.
    base_members, _ = resolve_members(spec, registry)
    by_name = {m.name: m for m in base_members}
    candidates = list(by_name) + [n for n in registry.agents if n not in by_name]
    names = list(patch.members) if patch.members is not None else [m.name for m in base_members]
    unknown = [n for n in names if n not in by_name and n not in registry.agents]
    if unknown:
        raise PatchError(f"no agent called {', '.join(map(repr, unknown))} (agents: {', '.join(candidates)})")
    plugin_agents, plugin_tools = _plugin_parts(registry, patch.disabled_plugins)
    off_tools = set(patch.disabled_tools) | plugin_tools
    kept = [n for n in names if n not in patch.disabled_agents and n not in plugin_agents]
    if not kept:
        raise PatchError("the team would have no members")
    unknown = [n for n in patch.agents if n not in by_name and n not in registry.agents]
    if unknown:
        raise PatchError(f"no agent called {', '.join(map(repr, unknown))}")
    agents = dict(spec.agents)
    for name in kept:
        settings = patch.agents.get(name, AgentPatch())
        tools = intended_tools(name, spec, patch, registry)
        missing = [t for t in tools if t not in registry.tools]
        if missing:
            raise PatchError(f"agent {name!r}: no tool called {', '.join(map(repr, missing))}")
        override = agents.get(name, AgentOverride())
        agents[name] = override.model_copy(update={
            "system_message": settings.system_message or override.system_message,
            "model": settings.model or override.model,
            "temperature": settings.temperature if settings.temperature is not None else override.temperature,
            "tools": [t for t in tools if t not in off_tools],
        })
    update: dict[str, Any] = {"members": kept, "agents": agents}
    if patch.termination is not None:
        update["termination"] = patch.termination
    patched = spec.model_copy(update=update)
    try:  # the team type's own rules (a graph's edges, a swarm's handoffs) still hold
        check_team(patched, registry)
    except Exception as exc:
        raise PatchError(str(exc)) from None
    return patched


def intended_members(spec: TeamSpec, patch: TeamPatch, registry: Registry) -> list[str]:
    """The members the admin chose, in order, before plugins switched off are taken out."""
    names = list(patch.members) if patch.members is not None else [m.name for m in resolve_members(spec, registry)[0]]
    return [n for n in names if n not in patch.disabled_agents]


def intended_tools(agent: str, spec: TeamSpec, patch: TeamPatch, registry: Registry) -> list[str]:
    """The tools the admin gave ``agent`` (else the team file's, else its plugin's), before the
    team-wide switches take some away."""
    settings = patch.agents.get(agent)
    if settings is not None and settings.tools is not None:
        return list(settings.tools)
    found = {m.name: m for m in resolve_members(spec, registry)[0]}.get(agent) or registry.agents.get(agent)
    return list(found.tools) if found is not None else []


def effective(spec: TeamSpec, registry: Registry, default_model: str) -> dict[str, Any]:
    """What the team is: its members with prompt, model, temperature and tools, and its termination."""
    members, _ = resolve_members(spec, registry)
    return {
        "team": spec.name,
        "type": spec.type,
        "members": [
            {"name": m.name, "plugin": m.plugin, "description": m.description, "system_message": m.system_message,
             "model": m.model or spec.model or default_model, "temperature": m.temperature, "tools": list(m.tools)}
            for m in members
        ],
        "termination": spec.termination.model_dump(),
    }


def describe(spec: TeamSpec, registry: Registry, default_model: str) -> str:
    """:func:`effective` as YAML, the text a version's diff compares."""
    return yaml.safe_dump(effective(spec, registry, default_model), sort_keys=False, allow_unicode=True, width=100)


def diff(before: str, after: str, *, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=old, tofile=new))


class Overlays:
    """The admin versions this process builds new conversations with: each team's newest one.

    :meth:`refresh` asks the database for the newest version id before a conversation opens (one
    small query) and reloads the patches only when it changed, so a change made on any worker
    applies to every worker's next conversation without a restart.
    """

    def __init__(self) -> None:
        self._seen: tuple[int, int] = (-1, -1)
        self._patches: dict[str, tuple[int, TeamPatch]] = {}
        self._applied: dict[tuple[str, int, int], TeamSpec] = {}

    async def refresh(self, engine: AsyncEngine) -> None:
        try:
            newest = await team_versions.newest_id(engine)
            if newest == self._seen:
                return
            found = await team_versions.current(engine)
        except Exception as exc:  # the database is away: keep what this process had
            log.warning("could not read the admins' team versions: %s", exc)
            return
        patches: dict[str, tuple[int, TeamPatch]] = {}
        for team, stored in found.items():
            try:
                patches[team] = (stored.version, parse_patch(stored.patch))
            except PatchError as exc:
                log.error("team %r version %d cannot be read (%s); its team file applies", team, stored.version, exc)
        self._patches, self._seen = patches, newest

    def version(self, team: str) -> int:
        """The admin version ``team`` is built from (0: its file as it is)."""
        found = self._patches.get(team)
        return found[0] if found else 0

    def apply(self, spec: TeamSpec, registry: Registry) -> TeamSpec:
        found = self._patches.get(spec.name)
        if found is None:
            return spec
        key = (spec.name, found[0], id(spec))  # a process's registry and team files do not change
        if key in self._applied:
            return self._applied[key]
        try:
            self._applied[key] = patched = apply_patch(spec, found[1], registry)
            return patched
        except PatchError as exc:  # e.g. a plugin it names was uninstalled since: the file still works
            log.error("team %r: admin version %d no longer applies (%s); using its team file", spec.name,
                      found[0], exc)
            self._applied[key] = spec  # said once
            return spec
