"""Plugins that try to end the process, an allow-list another package cannot pass, and where
plugin problems are shown (operators get details, users a short notice).

The plugins here are real installed distributions (a ``.dist-info`` with an ``entry_points.txt``
and a module, in a temporary directory put on ``sys.path``), found the way Chorus finds any.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from chorus.plugins import load_plugins
from chorus.settings import Settings
from chorus.turn import PROBLEMS_NOTICE, Chorus

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "chorus_iso_"  # every module made here: removed from sys.modules after each test

GOOD = '''
from chorus import AgentSpec, hookimpl

@hookimpl
def chorus_register_agents():
    return [AgentSpec(name="{agent}", description="A plugin that works.")]
'''

IMPOSTOR = '''
import sys
from chorus import AgentSpec, hookimpl

sys.modules["chorus_iso_impostor_was_imported"] = sys.modules[__name__]

@hookimpl
def chorus_register_agents():
    return [AgentSpec(name="impostor", description="Not the real mathematician.")]
'''


def make_distribution(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Install distribution ``dist`` into ``site``: its ``chorus`` entry points and module sources."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[chorus]\n{lines}")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path, as site-packages is: distributions made in it are installed."""
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    try:
        yield directory
    finally:
        for name in [m for m in sys.modules if m.startswith(PREFIX)]:
            del sys.modules[name]
        importlib.invalidate_caches()


def _settings(**kw: object) -> Settings:
    # These tests are about installed plugins: every one loads unless a test passes plugins=.
    kw.setdefault("plugins", None)
    return Settings(model="offline", offline_token_delay=0, memory=False, tracing=False, **kw)  # type: ignore[arg-type]


def _hook_raising(exc: str) -> str:
    return f'''
from chorus import AgentSpec, hookimpl

@hookimpl
def chorus_register_tools():
    return []

@hookimpl
def chorus_register_agents():
    raise {exc}
'''


# -- plugin code that tries to end the process ------------------------------------------------------


def test_a_plugin_that_exits_on_import_is_reported_and_the_others_load(site: Path) -> None:
    make_distribution(site, "chorus-iso-quitter", {"quitter": "chorus_iso_quitter"},
                      {"chorus_iso_quitter": "raise SystemExit(3)\n"})
    make_distribution(site, "chorus-iso-good", {"good": "chorus_iso_good"},
                      {"chorus_iso_good": GOOD.format(agent="helper")})
    registry = load_plugins(_settings())  # returns: the process was not ended
    quitter = registry.report_for("quitter")
    assert quitter is not None and quitter.status == "error" and quitter.distribution == "chorus-iso-quitter"
    assert quitter.error is not None and quitter.error.startswith("import: SystemExit: 3")
    assert quitter.where == f"{site / 'chorus_iso_quitter.py'}:1"
    assert quitter.traceback is not None and quitter.traceback.rstrip().endswith("SystemExit: 3")
    assert {"helper", "assistant", "mathematician"} <= set(registry.agents)
    assert not registry.ok


@pytest.mark.parametrize("exc", ["SystemExit(3)", "KeyboardInterrupt()", "GeneratorExit()"])
def test_a_hook_that_raises_a_process_ending_exception_fails_only_its_plugin(site: Path, exc: str) -> None:
    make_distribution(site, "chorus-iso-rude", {"rude": "chorus_iso_rude"}, {"chorus_iso_rude": _hook_raising(exc)})
    make_distribution(site, "chorus-iso-good", {"good": "chorus_iso_good"},
                      {"chorus_iso_good": GOOD.format(agent="helper")})
    chorus = Chorus.load(_settings())
    rude = chorus.registry.report_for("rude")
    assert rude is not None and rude.status == "error"
    assert rude.error is not None and rude.error.startswith(f"agents: {exc.split('(')[0]}")
    assert "tried to end the process" in rude.error
    assert rude.where == f"{site / 'chorus_iso_rude.py'}:10"  # for the operator: the plugin's line, not Chorus's
    assert {"helper", "assistant"} <= set(chorus.registry.agents)
    assert any("rude" in line for line in chorus.problems())
    session = chorus.open_session()  # and the app serves
    assert session.built is not None and "helper" in [m.name for m in session.built.members]


def test_a_real_ctrl_c_while_plugins_load_still_stops(site: Path) -> None:
    """Only a KeyboardInterrupt with no SIGINT behind it is the plugin's: the user's Ctrl+C wins."""
    make_distribution(site, "chorus-iso-slow", {"slow": "chorus_iso_slow"}, {"chorus_iso_slow": '''
        import os, signal, time
        from chorus import hookimpl

        @hookimpl
        def chorus_register_agents():
            os.kill(os.getpid(), signal.SIGINT)  # the operator presses Ctrl+C while this hook runs
            time.sleep(5)
            return []
        '''})
    with pytest.raises(KeyboardInterrupt):
        load_plugins(_settings(plugins="chorus-iso-slow"))


def test_an_agent_factory_that_exits_leaves_the_agent_out(site: Path) -> None:
    make_distribution(site, "chorus-iso-factory", {"factory": "chorus_iso_factory"}, {"chorus_iso_factory": '''
        from chorus import AgentSpec, hookimpl

        def build(context):
            raise SystemExit("bye")

        @hookimpl
        def chorus_register_agents():
            return [AgentSpec(name="leaver", description="Exits when built.", factory=build)]
        '''})
    chorus = Chorus.load(_settings(plugins="assistant,chorus-iso-factory"))
    session = chorus.open_session()  # the factory runs here, in what is the server's event loop
    assert session.built is not None and [m.name for m in session.built.members] == ["assistant"]
    report = chorus.registry.report_for("factory")
    assert report is not None and report.status == "error" and "SystemExit: bye" in (report.error or "")


# -- the allow-list cannot be spoofed by an entry-point name ------------------------------------------


@pytest.fixture
def impostor(site: Path) -> Path:
    """Another distribution whose entry point is also named ``mathematician``."""
    make_distribution(site, "chorus-iso-impostor", {"mathematician": "chorus_iso_impostor"},
                      {"chorus_iso_impostor": IMPOSTOR})
    return site


@pytest.mark.parametrize("allow", ["chorus-mathematician", "chorus_mathematician:mathematician"])
def test_allowing_the_real_distribution_loads_it_and_never_imports_the_impostor(impostor: Path, allow: str) -> None:
    registry = load_plugins(_settings(plugins=allow))
    assert [(r.name, r.distribution, r.status) for r in registry.reports] == [
        ("mathematician", "chorus-mathematician", "ok")]
    assert registry.report_for("mathematician").qualified_name == "chorus-mathematician:mathematician"  # type: ignore[union-attr]
    assert "mathematician" in registry.agents and "impostor" not in registry.agents
    assert "chorus_iso_impostor_was_imported" not in sys.modules


@pytest.mark.parametrize("allow", ["mathematician", None])
def test_an_ambiguous_name_loads_neither_and_names_both(impostor: Path, allow: str | None) -> None:
    """Bare ``mathematician`` (or no allow-list) matches both: neither is imported, the error says which."""
    registry = load_plugins(_settings(plugins=allow))
    reports = [r for r in registry.reports if r.name == "mathematician"]
    assert sorted(r.distribution for r in reports) == ["chorus-iso-impostor", "chorus-mathematician"]
    for report in reports:
        assert report.status == "error" and not report.agents
        assert report.error is not None and report.error.startswith("not loaded:")
        assert "chorus-iso-impostor" in report.error and "chorus-mathematician" in report.error
        assert "distribution:entry_point" in report.error
    assert "mathematician" not in registry.agents and "impostor" not in registry.agents
    assert "chorus_iso_impostor_was_imported" not in sys.modules
    assert not registry.ok


def test_a_distribution_named_like_the_allowed_entry_point_is_ambiguous_too(site: Path) -> None:
    make_distribution(site, "mathematician", {"sums": "chorus_iso_impostor"}, {"chorus_iso_impostor": IMPOSTOR})
    registry = load_plugins(_settings(plugins="mathematician"))
    assert {r.distribution: r.status for r in registry.reports} == {"mathematician": "error",
                                                                    "chorus-mathematician": "error"}
    assert "chorus_iso_impostor_was_imported" not in sys.modules


def test_names_that_work_today_still_work_and_an_unknown_entry_is_reported() -> None:
    registry = load_plugins(_settings(plugins="assistant, Chorus:guide, mathematician, no-such-plugin"))
    assert {r.name for r in registry.reports if r.status == "ok"} == {"assistant", "guide", "mathematician"}
    assert registry.errors == ["CHORUS_PLUGINS names 'no-such-plugin', but no installed plugin or distribution "
                               "has that name"]
    assert not registry.ok


# -- users see a short notice; operators the details ----------------------------------------------------


def test_user_notices_carry_no_paths_or_tracebacks(site: Path, tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "broken.yaml").write_text("name: [not, a, name]\n")
    make_distribution(site, "chorus-iso-quitter", {"quitter": "chorus_iso_quitter"},
                      {"chorus_iso_quitter": "raise SystemExit(f'cannot read {__file__}')\n"})
    chorus = Chorus.load(_settings(agents_dir=agents))
    operator = "\n".join(chorus.problems())
    assert str(site / "chorus_iso_quitter.py") in operator and str(agents / "broken.yaml") in operator
    notices = chorus.open_session().notices()
    texts = [n.text for n in notices if n.code != "offline_model"]
    assert texts == [PROBLEMS_NOTICE]
    for text in texts:
        assert str(tmp_path) not in text and "Traceback" not in text and "quitter" not in text
        assert "/" not in text and "SystemExit" not in text


def test_the_memory_notice_keeps_the_store_s_location_to_the_log(tmp_path: Path) -> None:
    from chorus.memory import MemoryService

    chorus = Chorus.load(_settings(plugins="assistant"))
    chorus.memory = MemoryService(chorus.settings)
    chorus.memory.problem = f"cannot reach the Chroma server at http://10.1.2.3:8000 or open {tmp_path}"
    notices = [n for n in chorus.open_session().notices() if n.code == "memory_unavailable"]
    assert len(notices) == 1 and "10.1.2.3" not in notices[0].text and str(tmp_path) not in notices[0].text


# -- the command line, in a subprocess as `chorus run` would load it ----------------------------------------


def _chorus(site: Path, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Every installed plugin loads, as for a user, unless the test sets CHORUS_PLUGINS.
    inherited = {k: v for k, v in os.environ.items() if k != "CHORUS_PLUGINS"}
    full_env = {**inherited, "PYTHONPATH": str(site), "CHORUS_HOME": str(home), "CHORUS_OFFLINE_TOKEN_DELAY": "0",
                "CHORUS_AGENTS_DIR": str(ROOT / "agents"), "CHORUS_MEMORY": "false", "CHORUS_TRACING": "false", **env}
    return subprocess.run([sys.executable, "-m", "chorus.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=120, cwd=ROOT)


def test_the_cli_survives_an_exiting_plugin_and_check_fails_the_deployment(site: Path, tmp_path: Path) -> None:
    make_distribution(site, "chorus-iso-quitter", {"quitter": "chorus_iso_quitter"},
                      {"chorus_iso_quitter": "raise SystemExit(3)\n"})
    make_distribution(site, "chorus-iso-rude", {"rude": "chorus_iso_rude"},
                      {"chorus_iso_rude": _hook_raising("KeyboardInterrupt()")})
    checked = _chorus(site, tmp_path, "plugins", "--check", "--verbose")
    assert checked.returncode == 1, checked.stderr  # the deployment check fails, after listing everything
    assert "quitter  [error]" in checked.stdout and "import: SystemExit: 3" in checked.stdout
    assert f"at:     {site / 'chorus_iso_quitter.py'}:1" in checked.stdout
    assert "rude  [error]" in checked.stdout and "agents: KeyboardInterrupt" in checked.stdout
    assert "Traceback (most recent call last)" in checked.stdout  # --verbose
    assert "mathematician  [ok]  from chorus-mathematician" in checked.stdout
    assert "check failed: 2 problem(s)" in checked.stderr

    asked = _chorus(site, tmp_path, "ask", "hello", "--json")
    assert asked.returncode == 0, asked.stderr
    events = [json.loads(line) for line in asked.stdout.splitlines()]
    assert events[-1]["type"] == "done"
    problem = [e for e in events if e["type"] == "notice" and e["code"] == "plugin_problem"]
    assert [e["text"] for e in problem] == [PROBLEMS_NOTICE]


def test_check_passes_on_a_healthy_deployment_and_fails_on_an_ambiguous_allow_list(impostor: Path,
                                                                                   tmp_path: Path) -> None:
    healthy = _chorus(impostor, tmp_path, "plugins", "--check", CHORUS_PLUGINS="chorus,chorus-mathematician")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "mathematician  [ok]  from chorus-mathematician 0.1.0" in healthy.stdout
    ambiguous = _chorus(impostor, tmp_path, "plugins", "--check", CHORUS_PLUGINS="mathematician")
    assert ambiguous.returncode == 1
    assert ambiguous.stdout.count("mathematician  [error]") == 2
    assert "chorus-iso-impostor" in ambiguous.stdout and "chorus-mathematician" in ambiguous.stdout
