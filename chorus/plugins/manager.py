"""Finding, loading and isolating plugins.

Plugins come from two places: ``DEFAULT_PLUGINS`` (Chorus's own built-in
agents, registered through the very same hooks) and the ``chorus``
entry-point group of installed distributions. ``CHORUS_PLUGINS`` filters
both. Every step that runs plugin code (import, each hook) is guarded, so a
broken plugin is reported with its error and skipped while the rest load.
"""

from __future__ import annotations

import functools
import importlib
import logging
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

import pluggy

from chorus.plugins import hookspecs
from chorus.plugins._specs import AgentSpec, ToolSpec
from chorus.settings import Settings, normalise_name

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "chorus"

DEFAULT_PLUGINS: tuple[str, ...] = ("chorus.builtin.assistant", "chorus.builtin.guide", "chorus.builtin.librarian")
"""Modules of Chorus's built-in agents; loaded like any plugin, distribution ``chorus``."""

Status = Literal["ok", "error"]


@dataclass
class PluginReport:
    """What happened to one plugin: shown by ``chorus plugins``, the log and the page."""

    name: str
    distribution: str
    version: str
    module: str
    status: Status = "ok"
    error: str | None = None
    agents: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    builtin: bool = False

    def fail(self, stage: str, exc: BaseException) -> None:
        """Mark the plugin failed at ``stage`` ('import', 'tools', 'agents', 'build').

        What it registered before the failure stays registered (and listed); only the
        part that failed is skipped.
        """
        self.status = "error"
        message = f"{stage}: {type(exc).__name__}: {exc}"
        self.error = message if self.error is None else f"{self.error}; {message}"
        log.error(
            "plugin %r (%s %s) failed at %s: %s\n%s",
            self.name,
            self.distribution,
            self.version,
            stage,
            exc,
            "".join(traceback.format_exception(exc)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "agents": list(self.agents),
            "tools": list(self.tools),
            "teams": list(self.teams),
        }


@dataclass
class Registry:
    """The agents and tools every loaded plugin offered, and a report per plugin."""

    agents: dict[str, AgentSpec] = field(default_factory=dict)
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    embedders: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Embedding-function factories by name (``CHORUS_EMBEDDING`` picks one)."""
    teams: dict[str, Any] = field(default_factory=dict)
    """Teams plugins offer (:class:`chorus.TeamSpec` by name); ``agents/`` files of the same name win."""
    reports: list[PluginReport] = field(default_factory=list)

    def report_for(self, plugin: str) -> PluginReport | None:
        return next((r for r in self.reports if r.name == plugin), None)

    @property
    def problems(self) -> list[PluginReport]:
        return [r for r in self.reports if r.status == "error"]


@dataclass(frozen=True)
class _Candidate:
    name: str
    distribution: str
    version: str
    module: str
    load: Callable[[], object]
    builtin: bool


def _builtin_candidates() -> list[_Candidate]:
    from chorus import __version__

    return [
        _Candidate(
            name=module.rsplit(".", 1)[-1],
            distribution="chorus",
            version=__version__,
            module=module,
            load=functools.partial(importlib.import_module, module),
            builtin=True,
        )
        for module in DEFAULT_PLUGINS
    ]


def _entry_point_candidates(eps: Iterable[EntryPoint] | None = None) -> list[_Candidate]:
    found = entry_points(group=ENTRY_POINT_GROUP) if eps is None else eps
    result = []
    for ep in sorted(found, key=lambda e: e.name):
        dist = ep.dist
        result.append(
            _Candidate(
                name=ep.name,
                distribution=dist.name if dist else "?",
                version=dist.version if dist else "?",
                module=ep.value,
                load=ep.load,
                builtin=False,
            )
        )
    return result


def _returns(obj: object) -> Callable[[], object]:
    return lambda: obj


def _allowed(candidate: _Candidate, allow: set[str] | None) -> bool:
    if allow is None:
        return True
    names = {candidate.name, candidate.distribution, candidate.module}
    return any(normalise_name(n) in allow for n in names)


def new_plugin_manager() -> pluggy.PluginManager:
    """A pluggy manager that knows Chorus's hook specifications."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


class PluginLoader:
    """Loads plugins into a :class:`Registry`, one guarded step at a time.

    Tests and embedding code can pass ``extra`` plugin objects (modules or
    instances with hook implementations) to load next to the discovered ones.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        extra: Iterable[tuple[str, object]] = (),
        entry_points_: Iterable[EntryPoint] | None = None,
        include_builtins: bool = True,
    ) -> None:
        self.settings = settings
        self.pm = new_plugin_manager()
        self._extra = list(extra)
        self._eps = entry_points_
        self._include_builtins = include_builtins

    def candidates(self) -> list[_Candidate]:
        found = _builtin_candidates() if self._include_builtins else []
        found += _entry_point_candidates(self._eps)
        for name, obj in self._extra:
            found.append(
                _Candidate(name, "(in process)", "", getattr(obj, "__name__", repr(obj)), _returns(obj), False)
            )
        allow = self.settings.plugin_allow_list()
        return [c for c in found if _allowed(c, allow)]

    def load(self) -> Registry:
        """Import and register every allowed plugin, then collect tools and agents."""
        registry = Registry()
        loaded: list[tuple[PluginReport, object]] = []
        seen: set[str] = set()
        for cand in self.candidates():
            report = PluginReport(cand.name, cand.distribution, cand.version, cand.module, builtin=cand.builtin)
            registry.reports.append(report)
            if cand.name in seen:
                report.fail("import", ValueError(f"another plugin is already named {cand.name!r}"))
                continue
            seen.add(cand.name)
            try:
                plugin = cand.load()
                self.pm.register(plugin, name=cand.name)
            except Exception as exc:  # a broken plugin must not take the app down
                report.fail("import", exc)
                continue
            loaded.append((report, plugin))

        for report, plugin in loaded:
            self._collect(report, plugin, "chorus_register_tools", lambda r, v: self._add_tools(registry, r, v))
        for report, plugin in loaded:
            self._collect(report, plugin, "chorus_register_agents", lambda r, v: self._add_agents(registry, r, v))
        for report, plugin in loaded:
            self._collect(report, plugin, "chorus_register_embedders",
                          lambda r, v: self._add_embedders(registry, r, v))
        for report, plugin in loaded:
            self._collect(report, plugin, "chorus_register_teams", lambda r, v: self._add_teams(registry, r, v))
        for report in registry.reports:
            if report.status == "ok":
                log.info("plugin %s (%s %s) loaded: agents=%s tools=%s teams=%s", report.name,
                         report.distribution, report.version, report.agents, report.tools, report.teams)
        return registry

    def _collect(
        self,
        report: PluginReport,
        plugin: object,
        hook_name: str,
        add: Callable[[PluginReport, Any], None],
    ) -> None:
        if report.status != "ok":
            return
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            kwargs = {"settings": self.settings} if "settings" in impl.argnames else {}
            try:
                value = impl.function(**kwargs)
                if value is not None:
                    add(report, value)
            except Exception as exc:
                report.fail(hook_name.removeprefix("chorus_register_"), exc)

    def _add_tools(self, registry: Registry, report: PluginReport, value: Any) -> None:
        specs = [as_tool_spec(item) for item in _as_list(value, "tools")]
        for spec in specs:
            if spec.name in registry.tools:
                report.fail("tools", ValueError(f"tool {spec.name!r} is already registered"))
                continue
            registry.tools[spec.name] = spec
            report.tools.append(spec.name)

    def _add_embedders(self, registry: Registry, report: PluginReport, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise TypeError(f"chorus_register_embedders must return a mapping of name to factory, got {value!r}")
        for name, factory in value.items():
            if not callable(factory):
                raise TypeError(f"embedder {name!r} is not a factory (a callable returning an embedding function)")
            if name in registry.embedders or name == "minilm":
                report.fail("embedders", ValueError(f"embedder {name!r} is already registered"))
                continue
            registry.embedders[str(name)] = factory

    def _add_teams(self, registry: Registry, report: PluginReport, value: Any) -> None:
        from chorus.teams.spec import TeamSpec

        for item in _as_list(value, "teams"):
            if isinstance(item, Mapping):
                item = TeamSpec.model_validate({**item, "source": f"plugin {report.name}"})
            elif isinstance(item, TeamSpec):
                item = item.model_copy(update={"source": item.source or f"plugin {report.name}"})
            else:
                raise TypeError(f"chorus_register_teams must return TeamSpec objects or mappings, got {item!r}")
            if item.name in registry.teams:
                report.fail("teams", ValueError(f"team {item.name!r} is already registered by another plugin"))
                continue
            registry.teams[item.name] = item
            report.teams.append(item.name)

    def _add_agents(self, registry: Registry, report: PluginReport, value: Any) -> None:
        for spec in _as_list(value, "agents"):
            if not isinstance(spec, AgentSpec):
                raise TypeError(f"chorus_register_agents must return AgentSpec objects, got {spec!r}")
            missing = [t for t in spec.tools if t not in registry.tools]
            if missing:
                report.fail("agents", LookupError(f"agent {spec.name!r} uses unknown tools {missing}"))
                continue
            if spec.name in registry.agents:
                report.fail("agents", ValueError(f"agent {spec.name!r} is already registered"))
                continue
            registry.agents[spec.name] = _with_plugin(spec, report.name)
            report.agents.append(spec.name)


def _with_plugin(spec: AgentSpec, plugin: str) -> AgentSpec:
    from dataclasses import replace

    return replace(spec, plugin=plugin)


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"expected a list of {what}, got {type(value).__name__}")
    return list(value)


def as_tool_spec(item: Any) -> ToolSpec:
    """Accept what a plugin returns for a tool: a ToolSpec, an AutoGen tool or a function."""
    if isinstance(item, ToolSpec):
        return item
    from autogen_core.tools import BaseTool

    if isinstance(item, BaseTool):
        tool = item
        return _AutogenToolSpec(func=tool.run_json, name=tool.name, description=tool.description, tool=tool)
    if callable(item):
        return ToolSpec(func=item)
    raise TypeError(f"not a tool: {item!r}")


@dataclass(frozen=True)
class _AutogenToolSpec(ToolSpec):
    """A ToolSpec around a ready-made AutoGen tool (kept as is)."""

    tool: Any = None

    def to_autogen(self, context: Any = None) -> Any:
        return self.tool


def load_plugins(settings: Settings, *, extra: Iterable[tuple[str, object]] = ()) -> Registry:
    """Discover, filter and load every plugin; never raises for a plugin's fault."""
    return PluginLoader(settings, extra=extra).load()
