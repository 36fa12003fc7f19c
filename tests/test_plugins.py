"""The plugin manager: discovery, the allow-list, and broken plugins that must not take the app down."""

from __future__ import annotations

from importlib.metadata import EntryPoint

from chorus import AgentSpec, ToolSpec, hookimpl
from chorus.plugins import PluginLoader, load_plugins
from chorus.plugins.manager import DEFAULT_PLUGINS
from chorus.settings import Settings
from chorus.turn import Chorus


def weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


class Good:
    @hookimpl
    def chorus_register_tools(self) -> list[ToolSpec]:
        return [ToolSpec(func=weather, keywords=("weather",))]

    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name="forecaster", description="Tells the weather.", tools=("weather",))]


class RaisesInAgents:
    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        raise RuntimeError("database is down")


class UnknownTool:
    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name="lost", description="Uses a tool nobody registered.", tools=("nope",))]


class WrongType:
    @hookimpl
    def chorus_register_agents(self) -> object:
        return "not a list"


class BadFactory:
    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        def factory(ctx: object) -> object:
            raise ValueError("factory exploded")

        return [AgentSpec(name="fragile", description="Fails to build.", factory=factory)]  # type: ignore[arg-type]


def _settings(**kw: object) -> Settings:
    return Settings(model="offline", offline_token_delay=0, **kw)  # type: ignore[arg-type]


def test_builtins_load_through_the_same_hooks_as_any_plugin() -> None:
    registry = load_plugins(_settings(plugins="assistant,guide"))
    reports = {r.name: r for r in registry.reports}
    assert set(reports) == {"assistant", "guide"}
    assert all(r.status == "ok" and r.builtin and r.distribution == "chorus" for r in reports.values())
    assert {"assistant", "guide"} <= set(registry.agents)
    assert "current_time" in registry.tools and "chorus_help" in registry.tools
    assert [m.rsplit(".", 1)[-1] for m in DEFAULT_PLUGINS] == ["assistant", "guide", "librarian"]


def test_in_process_plugin_registers_and_unregisters() -> None:
    loader = PluginLoader(_settings(), extra=[("good", Good())])
    try:
        registry = loader.load()
        assert registry.agents["forecaster"].plugin == "good"
        assert registry.tools["weather"].func is weather
        assert loader.pm.has_plugin("good")
    finally:
        for name, _ in loader.pm.list_name_plugin():
            loader.pm.unregister(name=name)
    assert loader.pm.get_plugins() == set()


def test_a_broken_plugin_is_reported_and_the_rest_load() -> None:
    extra = [("good", Good()), ("raises", RaisesInAgents()), ("unknown_tool", UnknownTool()), ("wrong", WrongType())]
    registry = load_plugins(_settings(), extra=extra)
    by_name = {r.name: r for r in registry.reports}
    assert by_name["good"].status == "ok"
    assert by_name["raises"].status == "error" and "database is down" in (by_name["raises"].error or "")
    assert by_name["unknown_tool"].status == "error" and "'nope'" in (by_name["unknown_tool"].error or "")
    assert by_name["wrong"].status == "error" and "expected a list" in (by_name["wrong"].error or "")
    assert "forecaster" in registry.agents and "lost" not in registry.agents


def test_a_plugin_that_fails_to_import_is_skipped() -> None:
    broken = EntryPoint(name="ghost", value="chorus_no_such_module_xyz", group="chorus")
    loader = PluginLoader(_settings(), entry_points_=[broken])
    registry = loader.load()
    ghost = registry.report_for("ghost")
    assert ghost is not None and ghost.status == "error"
    assert ghost.error and ghost.error.startswith("import: ModuleNotFoundError")
    assert "assistant" in registry.agents  # the built-ins still load


def test_allow_list_matches_plugin_or_distribution_names() -> None:
    extra = [("good", Good())]
    only_good = load_plugins(_settings(plugins="good"), extra=extra)
    assert [r.name for r in only_good.reports] == ["good"]
    by_dist = load_plugins(_settings(plugins=" Chorus "), extra=extra)  # the built-ins' distribution
    assert {r.name for r in by_dist.reports} == {"assistant", "guide", "librarian"}
    everything = load_plugins(_settings(plugins=""), extra=extra)
    assert {"assistant", "guide", "good"} <= {r.name for r in everything.reports}


def test_example_plugin_is_discovered_through_its_entry_point() -> None:
    registry = load_plugins(_settings(plugins="chorus-mathematician"))
    report = registry.report_for("mathematician")
    assert report is not None and report.status == "ok", report
    assert report.distribution == "chorus-mathematician" and not report.builtin
    assert "mathematician" in registry.agents


def test_agent_that_fails_to_build_is_left_out_and_reported() -> None:
    chorus = Chorus.load(_settings(plugins="assistant,fragile"), extra_plugins=[("fragile", BadFactory())])
    session = chorus.open_session()
    assert session.built is not None
    assert [m.name for m in session.built.members] == ["assistant"]
    notices = " ".join(n.text for n in session.notices())
    assert "fragile" in notices and "factory exploded" in notices
    report = chorus.registry.report_for("fragile")
    assert report is not None and report.status == "error"


def test_tool_spec_accepts_plain_functions_and_rejects_bad_names() -> None:
    spec = ToolSpec(func=weather)
    assert (spec.name, spec.description) == ("weather", "The weather in a city.")
    import pytest

    with pytest.raises(ValueError):
        ToolSpec(func=weather, name="not valid")
    with pytest.raises(ValueError):
        AgentSpec(name="x", description=" ")
