"""The builder pipeline as users meet it: offline it plans and writes a skeleton that compiles and
runs (a CLI tool, a web API, a game loop), says so honestly for anything else, reads the files in
the conversation, hands a real model's files to the user, and goes on from the next step after a
restart in the middle."""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chorus_builder import MEMBERS, TEAM

from chorus import Attachment, files_in
from chorus.testing import (
    ChorusFactory,
    MessageEvent,
    NoticeEvent,
    ProgressEvent,
    ScriptedModel,
    checkpoint_store,
    done,
    events_of,
    replies,
    run,
    run_turn,
)

PLUGINS = ["chorus", "builder"]  # the researcher searches with Chorus's own search_knowledge tool


def _written(events: list[Any], where: Path) -> list[Path]:
    [coder] = [m for m in replies(events) if m.agent == "coder"]
    paths = []
    for produced in files_in(coder.content):
        path = where / produced.name
        path.write_text(produced.content, encoding="utf-8")
        paths.append(path)
    return paths


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          input="")


@pytest.mark.parametrize(("request_text", "smoke", "says"), [
    ("Build a command-line tool that counts words in text files", ["--help"], "usage:"),
    ("Build a small web API for todo items", ["--self-test"], "self-test passed"),
    ("Write a snake game", ["--demo"], "demo finished"),
])
async def test_offline_the_pipeline_plans_and_writes_a_program_that_runs(
        make_chorus: ChorusFactory, tmp_path: Path, request_text: str, smoke: list[str], says: str) -> None:
    chorus = make_chorus(installed=PLUGINS)
    events = await run(chorus.open_session(TEAM), request_text)
    assert [m.agent for m in replies(events)] == MEMBERS
    assert [e.text for e in events_of(events, ProgressEvent)] == [
        f"step {i} of 5: {name}" for i, name in enumerate(MEMBERS, 1)]
    assert done(events).stop_reason == "completed"
    said = {m.agent: m.content for m in replies(events)}
    assert "**Plan**" in said["planner"] and "1. " in said["planner"]
    assert "Architecture notes" in said["executor"]
    paths = _written(events, tmp_path)
    assert paths and all(p.suffix == ".py" for p in paths)
    for path in paths:
        py_compile.compile(str(path), doraise=True)
    result = _python(paths[0].name, *smoke, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert says in result.stdout
    assert paths[0].name in said["finalizer"] and "Download" in said["finalizer"]


async def test_offline_the_cli_skeleton_does_its_placeholder_work_and_its_tests_pass(
        make_chorus: ChorusFactory, tmp_path: Path) -> None:
    chorus = make_chorus(installed=PLUGINS)
    paths = _written(await run(chorus.open_session(TEAM), "Make a CLI that counts words"), tmp_path)
    (tmp_path / "sample.txt").write_text("one two three\n", encoding="utf-8")
    result = _python(paths[0].name, "sample.txt", cwd=tmp_path)
    assert result.returncode == 0 and "words=3" in result.stdout
    tests = _python("-m", "pytest", "-q", "-p", "no:cacheprovider", paths[1].name, cwd=tmp_path)
    assert tests.returncode == 0 and "2 passed" in tests.stdout, tests.stdout


async def test_offline_a_request_without_a_skeleton_gets_a_plan_and_an_honest_note(
        make_chorus: ChorusFactory) -> None:
    chorus = make_chorus(installed=PLUGINS)
    events = await run(chorus.open_session(TEAM), "Design a distributed database for satellites")
    said = {m.agent: m.content for m in replies(events)}
    assert "**Plan**" in said["planner"]
    assert "can't write code for this request offline" in said["coder"] and not files_in(said["coder"])
    assert "no code yet" in said["finalizer"]


async def test_the_researcher_reads_the_files_in_the_conversation(make_chorus: ChorusFactory) -> None:
    chorus = make_chorus(installed=PLUGINS)
    notes = Attachment(name="requirements.md", text="# Needs\nThe tool must count words per file.\nColour output.")
    events = await run(chorus.open_session(TEAM), "Build a command-line tool that counts words", attachments=[notes])
    research = replies(events)[0]
    assert research.agent == "researcher"
    assert "requirements.md" in research.content and "count words per file" in research.content


async def test_with_a_real_model_each_step_is_a_model_agent_and_the_coders_files_reach_the_user(
        make_chorus: ChorusFactory) -> None:
    code = "### File: `hello.py`\n```python\nprint('hello')\n```\nRun `python hello.py`."
    model = ScriptedModel("Notes.", "1. Print hello.", "Plan is fine.", code, "You have hello.py.")
    chorus = make_chorus(installed=PLUGINS, model=model)
    events = await run(chorus.open_session(TEAM), "Say hello")
    assert [m.agent for m in replies(events)] == MEMBERS
    [produced] = files_in(replies(events)[3].content)
    assert (produced.name, produced.content) == ("hello.py", "print('hello')\n")
    coder_prompt = model.requests[3].messages[0]["content"]
    assert "### File:" in coder_prompt  # the coder is told how to hand files over


async def test_a_pipeline_cut_by_a_restart_goes_on_from_the_next_step(
        make_chorus: ChorusFactory, tmp_path: Path) -> None:
    async with checkpoint_store(tmp_path / "db") as store:
        chorus = make_chorus(installed=PLUGINS)
        session = chorus.open_session(TEAM, user_id="ann", thread_id="t1", checkpoints=store)
        seen: list[Any] = []
        turn = run_turn(session, "Build a command-line tool that counts words")
        async for event in turn:  # the server dies once the planner is done
            seen.append(event)
            if isinstance(event, MessageEvent) and event.agent == "planner":
                break
        await turn.aclose()
        plan = replies(seen)[-1].content

        restarted = make_chorus(installed=PLUGINS)
        again = restarted.open_session(TEAM, user_id="ann", thread_id="t1", checkpoints=store)
        assert await again.resume()
        assert again.interrupted is not None and [a for a, _ in again.interrupted.done] == ["researcher", "planner"]
        assert "after step 2 of 5 (planner)" in again.interrupted.notice(MEMBERS)
        # Another user holding the thread id gets nothing of it.
        assert not await restarted.open_session(TEAM, user_id="mallory", thread_id="t1", checkpoints=store).resume()

        events = await run(again, "continue")
        assert [m.agent for m in replies(events)] == ["executor", "coder", "finalizer"]  # not from the start
        assert any(n.code == "pipeline_continued" for n in events_of(events, NoticeEvent))
        assert [e.text for e in events_of(events, ProgressEvent)] == [
            "step 3 of 5: executor", "step 4 of 5: coder", "step 5 of 5: finalizer"]
        assert files_in(replies(events)[1].content)  # the coder wrote the CLI asked for before the restart
        assert plan  # (what the planner said stays in the conversation)
        # Finished: nothing is left to continue, and the next message is a new request from step 1.
        third = restarted.open_session(TEAM, user_id="ann", thread_id="t1", checkpoints=store)
        assert await third.resume() and third.interrupted is None
        events = await run(third, "Write a number guessing game")
        assert [m.agent for m in replies(events)] == MEMBERS  # a new request: every step again


def test_the_cli_saves_the_coders_files(tmp_path: Path) -> None:
    env = {**os.environ, "CHORUS_HOME": str(tmp_path / "home"), "CHORUS_PLUGINS": "chorus,builder",
           "CHORUS_MEMORY": "false", "CHORUS_TRACING": "false"}
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "chorus", "ask", "--team", TEAM, "--save-files", str(out),
                             "Build a small web API for notes"], capture_output=True, text=True, env=env,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    saved = sorted(p.name for p in out.iterdir())
    assert saved == ["notes.py"] and f"saved {out / 'notes.py'}" in result.stderr
    assert _python("notes.py", "--self-test", cwd=out).returncode == 0
