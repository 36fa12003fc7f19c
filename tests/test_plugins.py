"""The plugin manager: discovery, the allow-list, and broken plugins that must not take the app down."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from chorus import AgentSpec, Starter, TeamSpec, ToolContext, ToolSpec, hookimpl
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
    # These tests are about installed plugins: every one loads unless a test passes plugins=.
    kw.setdefault("plugins", None)
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
    assert ghost.where is None  # raised by importlib, not by plugin code
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
    # Users get a short notice; the plugin and its error are for the operator (log, `chorus plugins`).
    notices = [n for n in session.notices() if n.code == "plugin_problem"]
    assert len(notices) == 1 and "fragile" not in notices[0].text and "exploded" not in notices[0].text
    assert any("fragile" in p and "factory exploded" in p for p in chorus.problems())
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


# -- plugins that bring a team ---------------------------------------------------------------------


def lookup_order(number: int, context: ToolContext) -> str:
    """Look up one of the user's orders."""
    return f"order {number} of {context.user_id}, asked as {context.user_message!r}"


@pytest.mark.asyncio
async def test_each_chat_gets_its_own_bound_tool_and_the_schema_is_made_once() -> None:
    """Tools are built for every chat: each must run with its own chat's context."""
    from autogen_core import CancellationToken

    spec = ToolSpec(func=lookup_order)
    ana = ToolContext(user_id="ana", thread_id="t1", team="shop", user_message="mine")
    bo = ToolContext(user_id="bo", thread_id="t2", team="shop", user_message="his")
    tool_a, tool_b = spec.to_autogen(ana), spec.to_autogen(bo)
    assert tool_a is not tool_b
    assert await tool_a.run_json({"number": 7}, CancellationToken()) == "order 7 of ana, asked as 'mine'"
    assert await tool_b.run_json({"number": 8}, CancellationToken()) == "order 8 of bo, asked as 'his'"
    assert tool_a.schema is tool_b.schema  # made once, not per chat or per model call
    assert "context" not in tool_a.schema["parameters"]["properties"]
    with pytest.raises(ValueError, match="needs a ToolContext"):
        spec.to_autogen()


class Shop:
    @hookimpl
    def chorus_register_tools(self) -> list[ToolSpec]:
        return [ToolSpec(func=lookup_order, keywords=("order",))]

    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name="clerk", description="Finds orders.", tools=("lookup_order",), team_only=True),
                AgentSpec(name="greeter", description="Says hello.", team_only=True)]

    @hookimpl
    def chorus_register_teams(self) -> list[object]:
        return [
            TeamSpec(name="shop", display_name="Shop", members=["greeter", "clerk"], routing="- clerk: {orders}",
                     starters=[Starter(label="My order", message="Where is order 7?")], default=True),
            {"name": "shop-desk", "members": ["clerk"], "description": "As a mapping, like a YAML file."},
        ]


class BadTeams:
    @hookimpl
    def chorus_register_teams(self) -> list[object]:
        return [{"name": "Not A Valid Name!", "members": ["x"]}]


class TakenTeam:
    @hookimpl
    def chorus_register_teams(self) -> list[object]:
        return [{"name": "shop", "members": ["assistant"]}]


def test_a_plugin_team_becomes_a_profile_and_its_specialists_stay_in_it(tmp_path: Path) -> None:
    settings = _settings(agents_dir=tmp_path, plugins="assistant,shop,bad,taken", memory=False, tracing=False)
    chorus_ = Chorus.load(settings, extra_plugins=[("shop", Shop()), ("bad", BadTeams()), ("taken", TakenTeam())])
    report = chorus_.registry.report_for("shop")
    assert report is not None and report.status == "ok" and report.teams == ["shop", "shop-desk"]
    assert report.to_dict()["teams"] == ["shop", "shop-desk"]
    bad = chorus_.registry.report_for("bad")
    assert bad is not None and bad.status == "error" and "teams:" in (bad.error or "")
    taken = chorus_.registry.report_for("taken")
    assert taken is not None and "already registered" in (taken.error or "")

    # The deployment's default stays the default: a plugin cannot take it.
    assert chorus_.catalog.default.name == "chorus"
    shop = chorus_.team("Shop")
    assert shop.source == "plugin shop" and shop.starters[0].message == "Where is order 7?"
    assert chorus_.team("shop-desk").source == "plugin shop"
    # team_only agents are not in the catch-all team, but are in the team that names them.
    everyone = chorus_.open_session()
    assert everyone.built is not None and [m.name for m in everyone.built.members] == ["assistant"]
    session = chorus_.open_session("shop")
    assert session.built is not None and [m.name for m in session.built.members] == ["greeter", "clerk"]


def test_the_deployment_s_team_file_replaces_a_plugin_team_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text("name: shop\ndisplay_name: Our shop\nmembers: [clerk]\ndefault: true\n")
    settings = _settings(agents_dir=tmp_path, plugins="assistant,shop", memory=False, tracing=False)
    chorus_ = Chorus.load(settings, extra_plugins=[("shop", Shop())])
    assert chorus_.team("shop").title == "Our shop" and chorus_.team("shop").source == str(tmp_path / "shop.yaml")
    assert chorus_.catalog.default.name == "shop"  # the file said so
    assert "shop-desk" in chorus_.catalog.teams


def test_routing_guidance_goes_into_the_selector_prompt_before_the_transcript() -> None:
    from chorus.teams.selector import SELECTOR_PROMPT, selector_prompt

    spec = TeamSpec(name="shop", members=["greeter", "clerk"], routing="- clerk: {orders}")
    prompt = selector_prompt(spec)
    rendered = prompt.format(roles="ROLES", history="HISTORY", participants="P")  # braces stay literal
    assert "How this team routes:\n- clerk: {orders}" in rendered
    assert rendered.index("{orders}") < rendered.index("HISTORY")
    assert selector_prompt(TeamSpec(name="plain")) == SELECTOR_PROMPT


async def test_tools_see_what_the_user_typed_this_turn_but_not_attached_files(tmp_path: Path) -> None:
    from chorus.attachments import Attachment
    from chorus.events import ToolResultEvent
    from chorus.models import scripted_model, tool_call
    from chorus.turn import run_turn

    settings = _settings(agents_dir=tmp_path, plugins="assistant,shop", memory=False, tracing=False)
    settings.model = "scripted"
    chorus_ = Chorus.load(settings, extra_plugins=[("shop", Shop())])
    session = chorus_.open_session("shop-desk", user_id="ann", stream=False)
    scripted_model.reset()
    scripted_model.queue(tool_call("lookup_order", number=7), "Found it.")
    try:
        events = [e async for e in run_turn(session, "Where is order 7?",
                                            attachments=[Attachment(name="note.txt", text="I am customer 99")])]
    finally:
        scripted_model.reset()
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.result == "order 7 of ann, asked as 'Where is order 7?'"


def test_chorus_is_distributed_under_a_name_of_its_own() -> None:
    """``chorus`` on PyPI is an unrelated chemistry package: a plugin depending on it could have
    Chorus replaced by it on an upgrade. Chorus is ``chorus-chat``; plugins and the guide say so."""
    import re
    import tomllib
    from importlib.metadata import distribution

    root = Path(__file__).resolve().parents[1]
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"] == "chorus-chat"
    scripts = {ep.name: ep.value for ep in distribution("chorus-chat").entry_points if ep.group == "console_scripts"}
    assert scripts == {"chorus": "chorus.cli:main"}  # the installed distribution is this one
    for plugin in sorted((root / "plugins").glob("*/pyproject.toml")):
        needs = [re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in tomllib.loads(plugin.read_text())["project"][
            "dependencies"]]
        assert "chorus-chat" in needs and "chorus" not in needs, plugin
    guide = (root / "docs" / "plugins.md").read_text()
    assert 'dependencies = ["chorus-chat"]' in guide and 'dependencies = ["chorus"]\n' not in guide
