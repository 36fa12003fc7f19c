"""Finding, loading and isolating plugins.

Plugins come from two places: ``DEFAULT_PLUGINS`` (Chorus's own built-in
agents, registered through the very same hooks) and the ``chorus``
entry-point group of installed distributions. ``CHORUS_PLUGINS`` filters
both before anything is imported (:func:`select`): an entry is a distribution
(``chorus-mathematician``), ``distribution:entry_point``, or a bare entry-point
name that only one distribution provides, so another package cannot pass for
an allowed plugin by naming its entry point alike. Every step that runs plugin
code (import, each hook) is guarded, ``SystemExit`` and ``KeyboardInterrupt``
included, so a broken plugin is reported with its error and skipped while the
rest load.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from typing import Any, Literal

import pluggy

from chorus.plugins import hookspecs
from chorus.plugins._discovery import DEFAULT_PLUGINS, ENTRY_POINT_GROUP, Candidate, discover, select
from chorus.plugins._guard import InterruptWatch, contained, describe, where
from chorus.plugins._guards import GuardHook
from chorus.plugins._specs import AgentSpec, ToolSpec
from chorus.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PLUGINS", "ENTRY_POINT_GROUP", "PluginLoader", "PluginReport", "Registry", "as_tool_spec",
           "load_plugins", "new_plugin_manager", "select"]

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
    team_types: list[str] = field(default_factory=list)
    builtin: bool = False
    where: str | None = None
    """``file:line`` where the latest failure was raised (operators only: a server path)."""
    traceback: str | None = None
    """The latest failure's traceback (operators only; also in the log)."""

    @property
    def qualified_name(self) -> str:
        """``distribution:entry_point``: what to write in ``CHORUS_PLUGINS`` to allow exactly this plugin."""
        return f"{self.distribution}:{self.name}"

    def fail(self, stage: str, exc: BaseException) -> None:
        """Mark the plugin failed at ``stage`` ('import', 'tools', 'agents', 'build').

        What it registered before the failure stays registered (and listed); only the
        part that failed is skipped.
        """
        self.status = "error"
        message = f"{stage}: {describe(exc)}"
        self.error = message if self.error is None else f"{self.error}; {message}"
        self.where = where(exc.__traceback__) or self.where
        self.traceback = "".join(traceback.format_exception(exc))
        log.error(
            "plugin %r (%s %s) failed at %s: %s\n%s",
            self.name,
            self.distribution,
            self.version,
            stage,
            describe(exc),
            self.traceback,
        )

    def refuse(self, reason: str) -> None:
        """Mark the plugin not loaded (never imported) because the allow-list cannot tell it apart."""
        self.status = "error"
        self.error = f"not loaded: {reason}"
        log.error("plugin %r (%s %s) not loaded: %s", self.name, self.distribution, self.version, reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "qualified_name": self.qualified_name,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "where": self.where,
            "traceback": self.traceback,
            "agents": list(self.agents),
            "tools": list(self.tools),
            "teams": list(self.teams),
            "team_types": list(self.team_types),
        }


@dataclass
class Registry:
    """The agents and tools every loaded plugin offered, and a report per plugin."""

    agents: dict[str, AgentSpec] = field(default_factory=dict)
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    embedders: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Embedding-function factories by name (``CHORUS_EMBEDDING`` picks one)."""
    team_types: dict[str, Any] = field(default_factory=dict)
    """Team types plugins offer, by name (:mod:`chorus.teams.registry` looks them up after its own)."""
    teams: dict[str, Any] = field(default_factory=dict)
    """Teams plugins offer (:class:`chorus.TeamSpec` by name); ``agents/`` files of the same name win."""
    guards: list[GuardHook] = field(default_factory=list)
    """Every guard, in order: plugins' ``chorus_check_input``/``chorus_check_output`` hooks, then the
    built-in guards ``CHORUS_GUARDS`` turns on (:mod:`chorus.plugins._guards`)."""
    reports: list[PluginReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Problems of ``CHORUS_PLUGINS`` itself (an entry no installed plugin matches)."""

    def report_for(self, plugin: str) -> PluginReport | None:
        return next((r for r in self.reports if r.name == plugin), None)

    @property
    def problems(self) -> list[PluginReport]:
        return [r for r in self.reports if r.status == "error"]

    @property
    def ok(self) -> bool:
        """No plugin in error and nothing wrong with the allow-list (``chorus plugins --check``)."""
        return not self.problems and not self.errors


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

    def discovered(self) -> list[Candidate]:
        """Every plugin found (built-ins, entry points, ``extra``), before the allow-list."""
        return discover(self._eps, self._extra, include_builtins=self._include_builtins)

    def candidates(self) -> list[Candidate]:
        """The plugins that will be imported: allowed, and told apart from every other."""
        chosen, _ = select(self.discovered(), self.settings.plugin_allow_list())
        return [c for c, refused in chosen if refused is None]

    def load(self) -> Registry:
        """Import and register every allowed plugin, then collect tools and agents."""
        registry = Registry()
        chosen, registry.errors = select(self.discovered(), self.settings.plugin_allow_list())
        for error in registry.errors:
            log.error("%s", error)
        with InterruptWatch() as watch:  # a real Ctrl+C still stops; a plugin's KeyboardInterrupt does not
            self._load(registry, chosen, watch)
        for report in registry.reports:
            if report.status == "ok":
                log.info("plugin %s (%s %s) loaded: agents=%s tools=%s teams=%s", report.name,
                         report.distribution, report.version, report.agents, report.tools, report.teams)
        return registry

    def _load(self, registry: Registry, chosen: list[tuple[Candidate, str | None]], watch: InterruptWatch) -> None:
        loaded: list[tuple[PluginReport, object]] = []
        for cand, refused in chosen:
            report = PluginReport(cand.name, cand.distribution, cand.version, cand.module, builtin=cand.builtin)
            registry.reports.append(report)
            if refused is not None:
                report.refuse(refused)
                continue
            imported: list[object] = []

            def import_plugin(cand: Candidate = cand, imported: list[object] = imported) -> None:
                imported.append(cand.load())
                self.pm.register(imported[0], name=cand.name)

            if self._guarded(report, "import", import_plugin, watch):
                loaded.append((report, imported[0]))

        for report, plugin in loaded:
            self._collect(report, plugin, "chorus_register_tools", lambda r, v: self._add_tools(registry, r, v), watch)
        for report, plugin in loaded:
            self._collect(report, plugin, "chorus_register_agents", lambda r, v: self._add_agents(registry, r, v),
                          watch)
        for report, plugin in loaded:
            self._collect(report, plugin, "chorus_register_embedders",
                          lambda r, v: self._add_embedders(registry, r, v), watch)
        for report, plugin in loaded:
            self._collect(report, plugin, "chorus_register_team_types",
                          lambda r, v: self._add_team_types(registry, r, v), watch)
        for report, plugin in loaded:
            self._collect(report, plugin, "chorus_register_teams", lambda r, v: self._add_teams(registry, r, v), watch)
        for report, plugin in loaded:  # guards are called in every turn, not now: only collected
            if report.status != "ok":
                continue
            for kind in ("input", "output"):
                for impl in getattr(self.pm.hook, f"chorus_check_{kind}").get_hookimpls():
                    if impl.plugin is plugin:
                        registry.guards.append(GuardHook(report.name, kind, impl.function, tuple(impl.argnames)))

    @staticmethod
    def _guarded(report: PluginReport, stage: str, call: Callable[[], None], watch: InterruptWatch) -> bool:
        """Run plugin code; anything it raises marks ``report`` failed at ``stage`` (False)."""
        try:
            call()
        except BaseException as exc:  # SystemExit, KeyboardInterrupt…: a plugin must not end the process
            if watch.stopped_by_user(exc):
                raise
            report.fail(stage, exc)
            return False
        return True

    def _collect(
        self,
        report: PluginReport,
        plugin: object,
        hook_name: str,
        add: Callable[[PluginReport, Any], None],
        watch: InterruptWatch,
    ) -> None:
        # Every hook Chorus calls goes through here, one plugin's implementation at a time
        # (never ``pm.hook.<name>()``, which would let one plugin's exception stop all the rest).
        if report.status != "ok":
            return
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            kwargs = {"settings": self.settings} if "settings" in impl.argnames else {}

            def call(function: Callable[..., Any] = impl.function, kwargs: dict[str, Any] = kwargs) -> None:
                value = function(**kwargs)
                if value is not None:
                    add(report, value)

            self._guarded(report, hook_name.removeprefix("chorus_register_"), call, watch)

    def _add_tools(self, registry: Registry, report: PluginReport, value: Any) -> None:
        specs = [as_tool_spec(item) for item in _as_list(value, "tools")]
        for spec in specs:
            if spec.name.startswith("transfer_to_"):  # a swarm's handoff tools are named so
                report.fail("tools", ValueError(f"tool {spec.name!r}: names starting with 'transfer_to_' are "
                                                "reserved for a swarm's handoffs"))
                continue
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
            registry.embedders[str(name)] = contained(factory, f"embedder factory {name!r} of plugin {report.name!r}")

    def _add_team_types(self, registry: Registry, report: PluginReport, value: Any) -> None:
        from chorus.teams.spec import BUILT_IN_TEAM_TYPES

        for kind in _as_list(value, "team types"):
            name = getattr(kind, "name", None)
            if not isinstance(name, str) or not _TYPE_NAME.match(name):
                raise TypeError(f"a team type needs a name of lower-case letters, digits and '_', got {name!r}")
            missing = [m for m in ("default_max_messages", "build") if not callable(getattr(kind, m, None))]
            if missing:
                raise TypeError(f"team type {name!r} has no {' and no '.join(missing)} method")
            if name in BUILT_IN_TEAM_TYPES or name in registry.team_types:
                report.fail("team_types", ValueError(f"team type {name!r} is already registered"))
                continue
            registry.team_types[name] = kind
            report.team_types.append(name)

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


_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _with_plugin(spec: AgentSpec, plugin: str) -> AgentSpec:
    from dataclasses import replace

    # The factory runs when a conversation opens, in the server's event loop: what it raises
    # must be an ordinary error there, which leaves the agent out and reports the plugin.
    factory = contained(spec.factory, f"agent factory {spec.name!r} of plugin {plugin!r}") if spec.factory else None
    return replace(spec, plugin=plugin, factory=factory)


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
    """A ToolSpec around a ready-made AutoGen tool: kept as is, but its calls pass the turn's approval
    gate (chorus.approvals) like every other tool's, so a team file can require approval for it."""

    tool: Any = None

    def to_autogen(self, context: Any = None) -> Any:
        return _gated_tool(self.tool)


def _gated_tool(tool: Any) -> Any:
    """``tool`` (an AutoGen BaseTool), its calls waiting for approval when the turn's gate says so."""
    from autogen_core.tools import BaseTool

    from chorus.approvals import gated

    class Gated(BaseTool[Any, Any]):
        def __init__(self) -> None:
            super().__init__(tool.args_type(), tool.return_type(), tool.name, tool.description)

        @property
        def schema(self) -> Any:
            return tool.schema

        async def run(self, args: Any, cancellation_token: Any) -> Any:
            return await tool.run(args, cancellation_token)

        async def run_json(self, args: Any, cancellation_token: Any, call_id: str | None = None) -> Any:
            return await gated(tool.name, args, lambda: tool.run_json(args, cancellation_token, call_id=call_id))

        def return_value_as_string(self, value: Any) -> str:
            return str(tool.return_value_as_string(value))

    return Gated()


def load_plugins(settings: Settings, *, extra: Iterable[tuple[str, object]] = ()) -> Registry:
    """Discover, filter and load every plugin; never raises for a plugin's fault."""
    return PluginLoader(settings, extra=extra).load()
