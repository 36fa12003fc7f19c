"""Workflow teams in a real browser: a swarm's handoff shown as a step, the picture of a turn folded
under the answer and of the whole conversation from the composer, the builder pipeline's progress
and downloadable code, and a pipeline killed (-9) mid-way that goes on from its next step."""

from __future__ import annotations

import py_compile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FIRST_PARTY_PLUGINS, ChorusServer
from test_browser_chat import _pick_profile, _reply_of
from test_browser_history import _add_user, _login, _send

PLUGINS = {"CHORUS_PLUGINS": f"{FIRST_PARTY_PLUGINS},chorus-builder", "CHORUS_MEMORY": "false"}


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusServer]:
    srv = ChorusServer(tmp_path_factory.mktemp("workflows"), env={**PLUGINS, "CHORUS_OFFLINE_TOKEN_DELAY": "0.005"})
    _add_user(srv, "wendy", "wendy-password")
    srv.start()
    yield srv
    srv.stop()


def _image_loaded(page: Any, image: Any) -> None:
    image.wait_for(timeout=15_000)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 100", arg=image.element_handle(),
                           timeout=15_000)


def test_a_swarm_shows_its_handoff_and_each_turn_has_a_picture(
        browser: Any, flows: ChorusServer, artifacts: Path) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    _login(page, flows, "wendy", "wendy-password")
    _pick_profile(page, "Help desk")
    page.locator("#chat-input").wait_for(timeout=30_000)
    _send(page, "What time is it in Tokyo?")
    _reply_of(page, "assistant").get_by_text("Asia/Tokyo", exact=False).wait_for(timeout=30_000)
    page.get_by_text("guide → assistant", exact=False).first.wait_for(timeout=10_000)  # the handoff, as a step

    # The turn's picture, folded under the answer: open it and the diagram is an image the server drew.
    page.get_by_text("turn map", exact=False).last.click()
    picture = page.locator("img[src*='turn-map'], img[alt*='turn-map']").last
    _image_loaded(page, picture)
    page.get_by_text("Handed off: guide → assistant", exact=False).first.wait_for(timeout=10_000)
    page.screenshot(path=str(artifacts / "workflows-turn-map.png"), full_page=True)

    # A second turn, then the whole conversation from the composer's Map button.
    _send(page, "How long do refunds take?")
    _reply_of(page, "librarian").wait_for(timeout=30_000)
    page.locator("#message-composer").get_by_role("button", name="Map").click()
    _send(page, "draw it")
    page.get_by_text("This conversation: 2 turns", exact=False).first.wait_for(timeout=20_000)
    whole = page.locator("img[src*='conversation-map'], img[alt*='conversation-map']").last
    _image_loaded(page, whole)
    page.screenshot(path=str(artifacts / "workflows-conversation-map.png"), full_page=True)
    page.context.close()


def test_the_builder_shows_its_progress_and_offers_its_code_to_download(
        browser: Any, flows: ChorusServer, artifacts: Path, tmp_path: Path) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    _login(page, flows, "wendy", "wendy-password")
    _pick_profile(page, "Builder")
    page.locator("#chat-input").wait_for(timeout=30_000)
    _send(page, "Build a small web API for todo items")
    _reply_of(page, "finalizer").wait_for(timeout=60_000)
    page.get_by_text("5 steps: researcher → planner → executor → coder → finalizer", exact=False).first.wait_for(
        timeout=10_000)
    link = page.get_by_role("link", name="todo_items.py").first
    link.wait_for(timeout=10_000)
    href = link.get_attribute("href")
    assert href
    body = page.request.get(href if href.startswith("http") else flows.url + href)
    assert body.ok
    code = tmp_path / "todo_items.py"
    code.write_bytes(body.body())
    py_compile.compile(str(code), doraise=True)
    page.screenshot(path=str(artifacts / "workflows-builder.png"), full_page=True)
    page.context.close()


def test_a_pipeline_killed_mid_way_goes_on_from_its_next_step_after_the_restart(
        browser: Any, tmp_path: Path, artifacts: Path) -> None:
    workdir = tmp_path / "srv"
    workdir.mkdir(parents=True)
    slow = ChorusServer(workdir, env={**PLUGINS, "CHORUS_OFFLINE_TOKEN_DELAY": "0.05"})
    _add_user(slow, "kim", "kim-password")
    slow.start()
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, slow, "kim", "kim-password")
        _pick_profile(page, "Builder")
        page.locator("#chat-input").wait_for(timeout=30_000)
        _send(page, "Write a number guessing game")
        _reply_of(page, "executor").wait_for(timeout=60_000)
        page.get_by_text("step 4 of 5: coder", exact=False).first.wait_for(timeout=10_000)  # the coder is writing
        time.sleep(0.5)  # the page's copy of the executor's reply reaches the database
        assert slow.proc is not None
        slow.proc.kill()  # SIGKILL in the middle of the executor's step
        slow.proc.wait(10)
        context.close()
    finally:
        slow.stop()

    again = ChorusServer(workdir, env={**PLUGINS, "CHORUS_OFFLINE_TOKEN_DELAY": "0"}).start()
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        _login(page, again, "kim", "kim-password")
        page.locator("#thread-history").get_by_text("Write a number guessing game").click()
        page.get_by_text("was interrupted after step 3 of 5 (executor)", exact=False).first.wait_for(timeout=30_000)
        _send(page, "continue")
        _reply_of(page, "finalizer").wait_for(timeout=60_000)
        page.get_by_text("Going on from step 4 of 5 (coder)", exact=False).first.wait_for(timeout=10_000)
        # Nothing was done twice: one research note, one plan and one check in the conversation.
        for said in ("Research notes", "Plan for a game loop", "Plan checked"):
            assert page.get_by_text(said, exact=False).count() == 1, said
        page.get_by_role("link", name="number_guessing.py").first.wait_for(timeout=10_000)
        page.screenshot(path=str(artifacts / "workflows-builder-after-kill.png"), full_page=True)
        context.close()
    finally:
        again.stop()
