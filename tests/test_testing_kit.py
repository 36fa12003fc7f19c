"""chorus.testing, the test kit plugin authors get with Chorus (and its pytest plugin, make_chorus)."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import chorus.testing
from chorus import AgentSpec, TeamSpec, ToolSpec, hookimpl
from chorus.models import is_local_model
from chorus.testing import (
    ChorusFactory,
    ErrorEvent,
    ScriptedModel,
    SelectionEvent,
    ToolCallEvent,
    ToolResultEvent,
    done,
    events_of,
    last_reply,
    offline_reply,
    registered_model,
    replies,
    run,
    tool_call,
    visible_text,
)

ROOT = Path(__file__).resolve().parents[1]


def echo(text: str) -> str:
    """Say the text back."""
    return f"echo: {text}"


class Desk:
    """Two agents, one with a tool: enough for a selector team."""

    @hookimpl
    def chorus_register_tools(self) -> list[ToolSpec]:
        return [ToolSpec(func=echo, keywords=("echo",))]

    @hookimpl
    def chorus_register_agents(self) -> list[AgentSpec]:
        return [AgentSpec(name="greeter", description="Says hello.", keywords=("hello",)),
                AgentSpec(name="echoer", description="Repeats what it is told.", tools=("echo",))]


DESK_TEAM = TeamSpec(name="desk", members=["greeter", "echoer"])


# -- what make_chorus loads ---------------------------------------------------------------------


def test_only_the_plugins_asked_for_load_on_a_temporary_home(make_chorus: ChorusFactory, tmp_path: Path) -> None:
    chorus_ = make_chorus(plugins=[Desk()])
    assert set(chorus_.registry.agents) == {"greeter", "echoer"}  # no built-in, no installed plugin
    assert [r.name for r in chorus_.registry.reports] == ["Desk"] and chorus_.registry.ok
    settings = chorus_.settings
    assert settings.home == tmp_path / "chorus" and settings.agents_dir == tmp_path / "chorus" / "agents"
    assert settings.forbid_real_models and settings.model == "offline"
    # Memory and tracing are off unless asked.
    assert not settings.memory and chorus_.memory is None
    assert not settings.tracing and chorus_.tracer is None
    assert make_chorus(plugins=[Desk()], memory=True).memory is not None


def test_installed_plugins_are_named_like_chorus_plugins(make_chorus: ChorusFactory) -> None:
    with_builtins = make_chorus(plugins=[Desk()], installed=["chorus"])
    assert {"assistant", "guide", "librarian", "greeter"} <= set(with_builtins.registry.agents)
    assert "mathematician" not in with_builtins.registry.agents
    everything = make_chorus(installed=None)
    assert {"assistant", "mathematician"} <= set(everything.registry.agents)
    with pytest.raises(ValueError, match="needs plugins"):
        make_chorus()


def test_a_plugin_object_may_share_its_name_with_an_installed_plugin(make_chorus: ChorusFactory) -> None:
    # The installed plugin called mathematician is not asked for: the object of that name loads.
    chorus_ = make_chorus(plugins=[("mathematician", Desk())])
    assert chorus_.registry.ok, chorus_.problems()
    assert set(chorus_.registry.agents) == {"greeter", "echoer"}
    with pytest.raises(ValueError, match="two plugins are named"):
        make_chorus(plugins=[Desk(), Desk()])


def test_settings_come_from_the_arguments_not_the_environment(make_chorus: ChorusFactory,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_MAX_MESSAGE_CHARS", "5")
    monkeypatch.setenv("CHORUS_DEFAULT_TEAM", "elsewhere")
    chorus_ = make_chorus(plugins=[Desk()], upload_max_mb=0)
    assert chorus_.settings.max_message_chars == 20_000 and chorus_.settings.default_team is None
    assert chorus_.settings.upload_max_mb == 0
    with pytest.raises(TypeError, match="refuses real model calls"):
        make_chorus(plugins=[Desk()], forbid_real_models=False)


def test_teams_are_the_deployment_s_and_the_first_is_the_default(make_chorus: ChorusFactory) -> None:
    chorus_ = make_chorus(plugins=[Desk()], teams=[DESK_TEAM, {"name": "solo", "members": ["echoer"]}])
    assert list(chorus_.catalog.teams) == ["desk", "solo"] and chorus_.catalog.default.name == "desk"
    assert not chorus_.catalog.errors
    # A later Chorus of the same test gets only its own teams.
    assert list(make_chorus(plugins=[Desk()]).catalog.teams) == ["chorus"]


async def test_a_real_model_string_is_refused(make_chorus: ChorusFactory) -> None:
    chorus_ = make_chorus(plugins=[Desk()], model="openai/gpt-4o-mini", teams=[TeamSpec(name="solo",
                                                                                           members=["greeter"])])
    events = await run(chorus_, "hello")
    errors = events_of(events, ErrorEvent)
    assert errors and "refusing a real model request to 'openai/gpt-4o-mini'" in errors[0].message, errors
    assert done(events).stop_reason == "error" and not replies(events)


# -- scripted models a test owns ------------------------------------------------------------------


async def test_a_selector_team_consumes_the_speaker_pick_first_then_the_agent_s_replies(
        make_chorus: ChorusFactory) -> None:
    model = ScriptedModel("echoer", tool_call("echo", text="hi"), "I said hi.")
    chorus_ = make_chorus(plugins=[Desk()], model=model, teams=[DESK_TEAM])
    events = await run(chorus_, "say hi")
    assert [(r.hints.role, r.hints.agent) for r in model.requests] == [
        ("selector", "selector"), ("agent", "echoer"), ("agent", "echoer")]
    assert events_of(events, SelectionEvent)[0].agents == ["echoer"]
    assert [e.parsed_arguments() for e in events_of(events, ToolCallEvent)] == [{"text": "hi"}]
    assert [e.result for e in events_of(events, ToolResultEvent)] == ["echo: hi"]
    assert last_reply(events).agent == "echoer" and last_reply(events).content == "I said hi."
    assert done(events).stop_reason == "max_messages" and model.pending == 0  # one answer per message

    # Every turn starts with a pick; a reply that names no member is asked for again.
    model.queue("nobody", "greeter", "Hello!")
    session = chorus_.open_session()
    events = await run(session, "hello")
    assert last_reply(events).content == "Hello!" and model.pending == 0
    assert [r.hints.role for r in model.requests[3:]] == ["selector", "selector", "agent"]


async def test_a_one_member_team_has_no_pick(make_chorus: ChorusFactory) -> None:
    model = ScriptedModel("Hello there.")
    chorus_ = make_chorus(plugins=[Desk()], model=model, teams=[TeamSpec(name="solo", members=["greeter"])])
    assert last_reply(await run(chorus_, "hi")).content == "Hello there."
    assert [r.hints.role for r in model.requests] == ["agent"]


async def test_two_models_two_chorus_instances_never_share_a_queue(tmp_path: Path) -> None:
    """What two tests do, side by side: each registers its own model, and it is gone afterwards."""
    first, second = ScriptedModel("first"), ScriptedModel("second")
    with ChorusFactory(tmp_path / "a") as make_a, ChorusFactory(tmp_path / "b") as make_b:
        solo = [TeamSpec(name="solo", members=["greeter"])]
        one = make_a(plugins=[Desk()], model=first, teams=solo)
        two = make_b(plugins=[Desk()], model=second, teams=solo)
        names = one.settings.model, two.settings.model
        assert names[0] != names[1] and all(n.startswith("scripted-") and is_local_model(n) for n in names)
        assert make_a.model_name(first) == names[0]  # registered once
        assert last_reply(await run(two, "hi")).content == "second"
        assert last_reply(await run(one, "hi")).content == "first"
    assert not any(is_local_model(n) for n in names)
    assert len(first.requests) == len(second.requests) == 1


_seen: dict[str, str] = {}


def test_isolation_first_test_leaves_a_model_and_a_plugin_behind(make_chorus: ChorusFactory) -> None:
    model = ScriptedModel("left over")
    chorus_ = make_chorus(plugins=[Desk()], model=model)
    _seen["model"] = chorus_.settings.model
    assert is_local_model(_seen["model"]) and model.pending == 1


def test_isolation_the_next_test_sees_neither(make_chorus: ChorusFactory) -> None:
    if "model" not in _seen:
        pytest.skip("runs after the test above")
    assert not is_local_model(_seen["model"])
    chorus_ = make_chorus(installed="chorus")
    assert "greeter" not in chorus_.registry.agents and chorus_.registry.report_for("Desk") is None


def test_registered_model_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="already registered"), registered_model(ScriptedModel(), "offline"):
        pass
    with registered_model(ScriptedModel(), "my-model") as name:
        assert name == "my-model" and is_local_model(name)
    assert not is_local_model("my-model")


# -- the helpers -------------------------------------------------------------------------------


async def test_run_continues_a_conversation_and_the_pickers_read_it(make_chorus: ChorusFactory) -> None:
    model = ScriptedModel(tool_call("echo", text="secret"), "Done.", "Again.")
    chorus_ = make_chorus(plugins=[Desk()], model=model, teams=[TeamSpec(name="solo", members=["echoer"])])
    session = chorus_.open_session(user_id="ana")
    events = await run(session, "echo secret")
    assert "echo: secret" in visible_text(events) and '"secret"' in visible_text(events)
    await run(session, "and again")
    assert "echo secret" in json.dumps(model.requests[-1].messages)  # the team remembers the first turn
    with pytest.raises(TypeError, match="team and user_id"):
        await run(session, "hi", user_id="bob")
    with pytest.raises(AssertionError, match="no reply"):
        last_reply(events[-1:])


def test_offline_reply_asks_the_offline_model_what_an_agent_would_do(make_chorus: ChorusFactory) -> None:
    chorus_ = make_chorus(plugins=[Desk()])
    reply = offline_reply(chorus_, "please echo banana", agent="echoer")
    assert [c.name for c in reply.tool_calls] == ["echo"], reply.text
    with pytest.raises(KeyError, match="no agent 'nobody'"):
        offline_reply(chorus_, "hi", agent="nobody")


# -- the package and its pytest plugin ------------------------------------------------------------


def test_the_pytest_plugin_is_installed_and_loads_nothing_at_import() -> None:
    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.value.startswith("chorus.")]
    assert (plugin.name, plugin.value) == ("chorus", "chorus.testing.pytest_plugin")
    probe = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        "import chorus.testing.pytest_plugin\n"
        "changed = sorted(k for k, v in os.environ.items() if before.get(k) != v)\n"
        "heavy = [m for m in ('chorus.turn', 'chorus.models', 'autogen_agentchat', 'litellm') if m in sys.modules]\n"
        "print(json.dumps([changed, heavy]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHORUS_", "LITELLM_", "MLFLOW_", "HF_", "DO_NOT",
                                                                     "ANONYMIZED", "AUTOGEN_"))}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    changed, heavy = json.loads(result.stdout)
    from chorus._env import OFFLINE_DEFAULTS

    assert set(changed) <= set(OFFLINE_DEFAULTS), changed  # only what `import chorus` itself does
    assert heavy == []


def test_the_plugin_packages_tests_import_only_the_public_api() -> None:
    allowed = {"chorus", "chorus.testing"}
    found: dict[str, set[str]] = {}
    for path in sorted(ROOT.glob("plugins/*/tests/*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for module in modules:
                if module == "chorus" or module.startswith("chorus."):
                    found.setdefault(path.relative_to(ROOT).as_posix(), set()).add(module)
    assert found, "no plugin test imports chorus at all?"
    private = {path: sorted(modules - allowed) for path, modules in found.items() if modules - allowed}
    assert not private, private


def test_every_public_name_loads_and_is_documented() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = docs.split("## Testing your plugin", 1)[1]
    for name in chorus.testing.__all__:
        assert getattr(chorus.testing, name) is not None
        assert f"`{name}`" in section, f"docs/plugins.md does not list chorus.testing.{name}"
    assert (ROOT / "chorus" / "py.typed").is_file()


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


async def test_the_examples_of_testing_your_plugin_pass(make_chorus: ChorusFactory,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/plugins.md's test examples, run against its chorus_weather example plugin."""
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    head, section = docs.split("## Testing your plugin", 1)
    (plugin_code,) = [b for b in _python_blocks(head) if b.startswith("# src/chorus_weather/__init__.py")]
    weather = types.ModuleType("chorus_weather")
    exec(compile(plugin_code, "chorus_weather", "exec"), weather.__dict__)
    monkeypatch.setitem(sys.modules, "chorus_weather", weather)
    namespace: dict[str, object] = {}
    for block in _python_blocks(section):
        exec(compile(block, "docs/plugins.md", "exec"), namespace)
    tests = {name: f for name, f in namespace.items() if name.startswith("test_") and inspect.iscoroutinefunction(f)}
    assert len(tests) == 3, sorted(tests)
    for test in tests.values():
        await test(make_chorus)
