"""The ``chorus`` command, run as a user runs it: a subprocess of the installed script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIRST_PARTY_PLUGINS, WITH_INSTALLED_PLUGINS

ROOT = Path(__file__).resolve().parents[1]


def chorus(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command on this repository's deployment: its teams in agents/ and the first-party plugins they name."""
    full_env = {**os.environ, "CHORUS_OFFLINE_TOKEN_DELAY": "0", "CHORUS_AGENTS_DIR": str(ROOT / "agents"),
                **WITH_INSTALLED_PLUGINS}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "chorus.cli", *args],
        capture_output=True, text=True, env=full_env, input=stdin, timeout=120, cwd=ROOT,
    )


@pytest.fixture(scope="module")
def broken_plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An installed distribution whose ``chorus`` entry point names a module that does not exist."""
    site = tmp_path_factory.mktemp("site")
    dist = site / "chorus_broken_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: chorus-broken-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[chorus]\nbroken = chorus_broken_demo_missing\n")
    return str(site)


def test_ask_json_prints_one_event_per_line_ending_with_done() -> None:
    result = chorus("ask", "hello", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["stop_reason"] in ("completed", "max_messages")
    assert any(e["type"] == "notice" and "offline model" in e["text"] for e in events)
    message = next(e for e in events if e["type"] == "message")
    tokens = "".join(e["text"] for e in events if e["type"] == "token")
    assert tokens == message["content"] and "Here is what this team can do" in message["content"]


def test_ask_prints_the_answer_and_calls_tools() -> None:
    result = chorus("ask", "What time is it in Tokyo?")
    assert result.returncode == 0, result.stderr
    assert "[assistant]" in result.stdout and "Asia/Tokyo" in result.stdout
    assert "current_time" in result.stderr


def test_ask_with_attached_files(tmp_path: Path) -> None:
    policy = tmp_path / "policy.md"
    policy.write_text("Shipping is free over 50 euros.\nRefunds take five days.\n", encoding="utf-8")
    result = chorus("ask", "How long do refunds take?", "--file", str(policy))
    assert result.returncode == 0, result.stderr
    assert "Refunds take five days." in result.stdout and "Shipping" not in result.stdout
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n")
    refused = chorus("ask", "what is this?", "--file", str(image))
    assert refused.returncode == 2 and "photo.png" in refused.stderr and "text and PDF only" in refused.stderr


def test_a_first_ask_finds_the_knowledge_base_ingested(tmp_path: Path) -> None:
    env = {"CHORUS_HOME": str(tmp_path / "home"), "CHORUS_TRACING": "true"}  # tracing as users have it
    result = chorus("ask", "How long do refunds take?", env=env)
    assert result.returncode == 0, result.stderr
    assert "[librarian]" in result.stdout and "knowledge/music-store-policies.md" in result.stdout
    assert "mlflow" not in result.stderr.lower()  # no store set-up chatter


def test_ask_while_a_server_holds_the_store_says_so_once_and_still_answers(tmp_path: Path) -> None:
    from chorus.memory.store import VectorStore
    from chorus.settings import Settings

    held = VectorStore(Settings(home=tmp_path))
    held.client()  # what a running `chorus run` does with the embedded store
    try:
        result = chorus("ask", "What is 6 * 7?", env={"CHORUS_HOME": str(tmp_path)})
    finally:
        held.close()
    assert result.returncode == 0, result.stderr
    assert "6 * 7 = 42" in result.stdout
    notes = [line for line in result.stderr.splitlines() if "answering without memory and knowledge" in line]
    assert len(notes) == 1 and "CHORUS_CHROMA_URL" in notes[0], result.stderr
    assert "WARNING" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_ask_reads_standard_input_and_uses_the_chosen_team() -> None:
    result = chorus("ask", "-", "--team", "panel", "--json", stdin="hello panel")
    assert result.returncode == 0, result.stderr
    agents = [json.loads(line)["agent"] for line in result.stdout.splitlines() if '"type": "message"' in line]
    assert agents == ["assistant", "guide"]
    done = json.loads(result.stdout.splitlines()[-1])
    # Why the turn ended, in Chorus's words: not AutoGen's "Maximum number of messages 3 reached, ...".
    assert done["stop_reason"] == "max_messages"
    assert "Maximum number" not in done["detail"] and "current message count" not in done["detail"]
    assert done["detail"] == "The team had its say: it answers in at most 3 messages a turn."


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("ask", "hi", "--team", "nope"), 2, "Unknown team 'nope'"),
        (("ask", "   "), 1, "empty"),
        (("ask", "x" * 30_000), 1, "limit is 20,000"),
    ],
)
def test_bad_input_gives_a_clear_error_and_non_zero_exit(args: tuple[str, ...], code: int, needle: str) -> None:
    result = chorus(*args)
    assert result.returncode == code
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_stops_run_with_a_clear_error() -> None:
    result = chorus("run", "--port", "1", env={"CHORUS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode == 2
    assert "could not migrate the database postgresql+asyncpg://nobody@127.0.0.1:1/none" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_database_url_and_unwritable_export_are_clear_errors(tmp_path: Path) -> None:
    bad = chorus("users", "list", env={"CHORUS_DATABASE_URL": "localhost:5432/chorus"})
    assert bad.returncode == 2 and "not a database URL" in bad.stderr and "Traceback" not in bad.stderr
    env = {"CHORUS_HOME": str(tmp_path / "home")}
    missing = chorus("export", "no-such-thread", env=env)
    assert missing.returncode == 2 and "no conversation" in missing.stderr


def test_users_and_db_commands(tmp_path: Path) -> None:
    env = {"CHORUS_HOME": str(tmp_path / "home")}
    from alembic.script import ScriptDirectory

    from chorus.store.db import _alembic_config

    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    assert f"is at revision {head}." in chorus("db", "upgrade", env=env).stdout
    added = chorus("users", "add", "alice", "--password-stdin", env=env, stdin="long enough\n")
    assert added.returncode == 0, added.stderr
    again = chorus("users", "add", "alice", "--password-stdin", env=env, stdin="long enough\n")
    assert again.returncode == 2 and "already exists" in again.stderr
    listed = json.loads(chorus("users", "list", "--json", env=env).stdout)
    assert [u["name"] for u in listed] == ["alice"]
    assert chorus("users", "remove", "alice", env=env).returncode == 0
    assert "No accounts" in chorus("users", "list", env=env).stdout


def test_users_add_at_the_prompt_asks_again_after_a_short_password(tmp_path: Path) -> None:
    env = {"CHORUS_HOME": str(tmp_path / "home")}
    # As typed at the prompt (getpass reads standard input when there is no terminal): a short
    # password twice, then a good one twice.
    added = chorus("users", "add", "erin", env=env, stdin="short\nshort\nlong enough pw\nlong enough pw\n")
    assert added.returncode == 0, added.stderr
    assert "at least 8 characters; try again" in added.stderr
    assert "Added user 'erin'" in added.stdout
    listed = json.loads(chorus("users", "list", "--json", env=env).stdout)
    assert [u["name"] for u in listed] == ["erin"]


def test_unknown_model_is_a_clear_error() -> None:
    result = chorus("ask", "hi", env={"CHORUS_MODEL": "no-such-provider/zzz"})
    assert result.returncode == 2 and "Unknown model 'no-such-provider/zzz'" in result.stderr
    assert "Traceback" not in result.stderr


def test_plugins_json_lists_builtins_and_the_example_plugin() -> None:
    result = chorus("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["assistant"]["status"] == "ok" and plugins["assistant"]["builtin"]
    assert plugins["guide"]["agents"] == ["guide"]
    math = plugins["mathematician"]
    assert (math["status"], math["distribution"]) == ("ok", "chorus-mathematician")
    assert math["agents"] == ["mathematician"] and "calculate" in math["tools"]


def test_broken_installed_plugin_is_listed_with_its_error_and_ask_still_works(broken_plugin_path: str) -> None:
    env = {"PYTHONPATH": broken_plugin_path, "CHORUS_PLUGINS": f"{FIRST_PARTY_PLUGINS},chorus-broken-demo"}
    listed = chorus("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    broken = next(p for p in json.loads(listed.stdout) if p["name"] == "broken")
    assert broken["status"] == "error" and "ModuleNotFoundError" in broken["error"]
    assert broken["distribution"] == "chorus-broken-demo"
    human = chorus("plugins", env=env)
    assert "broken  [error]" in human.stdout and "chorus_broken_demo_missing" in human.stdout
    asked = chorus("ask", "hello", "--json", env=env)
    assert asked.returncode == 0
    lines = [json.loads(line) for line in asked.stdout.splitlines()]
    problems = [e for e in lines if e["type"] == "notice" and e["code"] == "plugin_problem"]
    assert problems and not any("chorus_broken_demo_missing" in e["text"] for e in problems)  # details: operators
    assert lines[-1]["type"] == "done"


def test_allow_list_limits_the_plugins() -> None:
    result = chorus("plugins", "--json", env={"CHORUS_PLUGINS": "mathematician"})
    assert [p["name"] for p in json.loads(result.stdout)] == ["mathematician"]


def test_teams_json_lists_the_deployment_teams() -> None:
    result = chorus("teams", "--json")
    assert result.returncode == 0, result.stderr
    teams = {t["name"]: t for t in json.loads(result.stdout)["teams"]}
    assert teams["chorus"]["default"] and teams["chorus"]["type"] == "selector"
    assert teams["panel"]["members"] == ["assistant", "guide"]


@pytest.mark.parametrize("command", [(), ("run",), ("ask",), ("plugins",), ("teams",)])
def test_help_everywhere(command: tuple[str, ...]) -> None:
    result = chorus(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


@pytest.mark.parametrize("module", ["chorus", "chorus.cli"])
def test_python_dash_m_runs_every_command(module: str) -> None:
    """``python -m chorus`` is the command when the script is not on PATH: every group and command
    is there (``widget``'s commands were missing when run as a module)."""
    env = {**os.environ, "CHORUS_AGENTS_DIR": str(ROOT / "agents")}
    result = subprocess.run([sys.executable, "-m", module, "widget", "--help"], capture_output=True, text=True,
                            env=env, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "snippet" in result.stdout and "token" in result.stdout
    top = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=env,
                         timeout=120, cwd=ROOT)
    for command in ("run", "ask", "users", "widget", "memory", "mlflow", "usage", "export"):
        assert command in top.stdout, command


@pytest.mark.parametrize("typed, needle", [("y", "verify who you are"), ("n", "Not run: the user denied order_track")])
def test_ask_at_a_terminal_asks_before_a_tool_that_needs_approval(tmp_path: Path, typed: str, needle: str) -> None:
    """With a person at the terminal, ``chorus ask`` asks y/N; the order tool then runs (and asks the
    unverified customer to verify) or does not."""
    import pty
    import select
    import time

    env = {**os.environ, "CHORUS_OFFLINE_TOKEN_DELAY": "0", "CHORUS_AGENTS_DIR": str(ROOT / "agents"),
           "CHORUS_HOME": str(tmp_path), "CHORUS_MEMORY": "false", **WITH_INSTALLED_PLUGINS}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the terminal
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "chorus.cli", "ask", "--team", "music-store",
                                   "Buy the song Black Dog"], env)
    seen, answered, deadline = b"", False, time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"Approve? [y/N]" in seen:
                os.write(fd, typed.encode() + b"\n")
                answered = True
    finally:
        os.waitpid(pid, 0)
    text = seen.decode(errors="replace")
    assert answered, text
    assert "invoices wants to run order_track(title=\"Black Dog\")" in text
    assert needle in text
