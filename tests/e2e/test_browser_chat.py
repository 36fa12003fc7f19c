"""The page in a real browser (Debian's Chromium): streamed replies under agent names, tools, stop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conftest import ChorusServer

ASSISTANT_MESSAGES = "[data-step-type='assistant_message']"


def _open_chat(page: Any, server: ChorusServer) -> None:
    page.goto(server.url, wait_until="domcontentloaded")
    page.locator("#chat-input").wait_for(state="visible", timeout=30_000)
    page.locator("#starters").wait_for(timeout=20_000)


def _send(page: Any, text: str) -> None:
    """Type and press Enter, as a user does: again if the page was still connecting (the text stays)."""
    box = page.locator("#chat-input")
    box.click()
    box.fill(text)
    deadline = time.monotonic() + 60  # a loaded machine can take a while to connect the page
    while True:
        page.keyboard.press("Enter")
        try:
            page.wait_for_function("() => document.querySelector('#chat-input').value === ''", timeout=1_500)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            box.click()


def _pick_profile(page: Any, name: str) -> None:
    """Choose the team ``name`` in the chat-profile picker (confirming the new chat if asked)."""
    page.locator("#chat-profiles").click()
    page.get_by_role("option", name=name).click()
    confirm = page.locator("#confirm")
    if confirm.count():
        confirm.click()


def _reply_of(page: Any, agent: str) -> Any:
    """The last message whose visible author label is ``agent``."""
    return page.locator(ASSISTANT_MESSAGES).filter(has=page.locator(f".chorus-author[data-author='{agent}']")).last


def test_streamed_reply_under_agent_name(page: Any, server: ChorusServer, artifacts: Path) -> None:
    _open_chat(page, server)

    # The offline model is announced above the composer, and the team's starters are offered.
    banner = page.locator("#chorus-model-banner")
    banner.wait_for(timeout=10_000)
    assert "Offline model in use" in banner.inner_text()
    assert page.locator("#starters").get_by_text("Time in Tokyo").is_visible()
    page.screenshot(path=str(artifacts / "chat-welcome.png"))
    _send(page, "What can you do?")
    reply = _reply_of(page, "assistant")
    reply.wait_for(timeout=20_000)
    # Sample the bubble while it fills: a streamed reply is seen at several lengths.
    lengths: list[int] = []
    deadline = time.monotonic() + 60  # a loaded machine can take a while to connect the page
    while time.monotonic() < deadline:
        text = reply.inner_text()
        if not lengths or len(text) != lengths[-1]:
            lengths.append(len(text))
        if "Offline model in use" in text:
            break
        time.sleep(0.05)
    final = reply.inner_text()
    assert "Here is what this team can do" in final and "Offline model in use" in final
    assert len([n for n in lengths if n > 0]) >= 3, f"reply did not stream: lengths seen {lengths}"
    assert reply.locator(".chorus-author").inner_text() == "assistant"
    page.screenshot(path=str(artifacts / "chat-streamed-reply.png"))


def test_tool_call_shows_as_a_step_and_another_agent_answers(page: Any, server: ChorusServer, artifacts: Path) -> None:
    _open_chat(page, server)
    _send(page, "What time is it in Tokyo?")
    page.get_by_text("Used current_time").wait_for(timeout=20_000)
    _reply_of(page, "assistant").get_by_text("Asia/Tokyo", exact=False).wait_for(timeout=20_000)
    page.get_by_text("Used current_time").click()
    page.get_by_text('"timezone"', exact=False).first.wait_for(timeout=5_000)

    _send(page, "How do I write a plugin?")
    guide = _reply_of(page, "guide")
    guide.wait_for(timeout=20_000)
    page.get_by_text("Used chorus_help").wait_for(timeout=20_000)
    guide.get_by_text("entry point", exact=False).first.wait_for(timeout=20_000)
    page.screenshot(path=str(artifacts / "chat-tool-step.png"))


def test_stop_button_stops_the_team_and_the_next_message_works(
    page: Any, tmp_path_factory: Any, artifacts: Path
) -> None:
    slow = ChorusServer(tmp_path_factory.mktemp("slow"), env={"CHORUS_OFFLINE_TOKEN_DELAY": "0.25"}).start()
    try:
        _open_chat(page, slow)
        _send(page, "What can you do?")
        reply = _reply_of(page, "assistant")
        reply.wait_for(timeout=20_000)
        stop = page.locator("#stop-button")
        stop.wait_for(timeout=10_000)
        stop.click()
        page.get_by_text("Task manually stopped.").wait_for(timeout=10_000)
        cut = reply.inner_text()
        time.sleep(1.0)
        assert reply.inner_text() == cut, "the reply kept growing after stop"
        assert "Offline model in use" not in cut

        # The cut-off bubble is finished, not left "streaming".
        assert reply.locator(".loading-cursor").count() == 0
        for question, needle in [("What time is it in Paris?", "Europe/Paris"), ("What is 2 + 2?", "2 + 2 = 4"),
                                 ("How do I write a plugin?", "entry point")]:
            _send(page, question)
            page.get_by_text(needle, exact=False).first.wait_for(timeout=30_000)
            stop.wait_for(state="detached", timeout=30_000)  # the turn is over
        page.screenshot(path=str(artifacts / "chat-after-stop.png"))
    finally:
        slow.stop()


def test_each_team_is_a_chat_profile_and_a_round_robin_team_answers_with_every_member(
    page: Any, server: ChorusServer, artifacts: Path
) -> None:
    _open_chat(page, server)
    _pick_profile(page, "Panel")
    page.locator("#starters").get_by_text("Say hello to the panel").wait_for(timeout=20_000)
    _send(page, "Hello panel, who are you?")
    _reply_of(page, "guide").get_by_text("see above for what we can do", exact=False).wait_for(timeout=30_000)
    assert "Here is what this team can do" in _reply_of(page, "assistant").inner_text()
    page.screenshot(path=str(artifacts / "chat-panel-team.png"))
