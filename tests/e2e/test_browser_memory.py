"""Memory and knowledge in a real browser: a user is remembered across conversations, and only by
their own; they see and forget their memories; the librarian answers from knowledge/ with sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import ChorusServer
from test_browser_history import _add_user, _login, _send


def _new_chat(page: Any, server: ChorusServer) -> None:
    page.goto(server.url, wait_until="domcontentloaded")
    page.locator("#chat-input").wait_for(timeout=30_000)


def test_memory_follows_its_user_only_and_can_be_forgotten(browser: Any, tmp_path: Path, artifacts: Path) -> None:
    workdir = tmp_path / "srv"
    workdir.mkdir(parents=True)
    server = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0"})
    _add_user(server, "alice", "alice-password")
    _add_user(server, "bob", "bob-password")
    server.start()
    try:
        alice = browser.new_context()
        page = alice.new_page()
        _login(page, server, "alice", "alice-password")
        _send(page, "My favourite artist is Miles Davis.")
        page.get_by_text("Saved to your memory", exact=False).first.wait_for(timeout=30_000)

        _new_chat(page, server)  # a new conversation: the team's memory of the chat is empty
        _send(page, "What do you remember about me?")
        page.get_by_text("Here is what I remember about you", exact=False).first.wait_for(timeout=30_000)
        assert page.get_by_text("My favourite artist is Miles Davis.").count() >= 1
        page.get_by_text("Used memory", exact=False).first.wait_for(timeout=5_000)
        page.screenshot(path=str(artifacts / "memory-recalled.png"))

        # The librarian answers a policy question from knowledge/ and names the source.
        _send(page, "How long do refunds take?")
        page.get_by_text("five working days", exact=False).first.wait_for(timeout=30_000)
        assert page.get_by_text("music-store-policies.md", exact=False).count() >= 1
        page.screenshot(path=str(artifacts / "knowledge-answer.png"))

        bob = browser.new_context()
        other = bob.new_page()
        _login(other, server, "bob", "bob-password")
        _send(other, "What do you remember about me? Is it Miles Davis?")
        other.get_by_text("I don't remember anything about you yet", exact=False) \
            .first.wait_for(timeout=30_000)
        other.wait_for_timeout(1_000)
        assert "My favourite artist is Miles Davis" not in other.content()
        bob.close()

        # Alice lists her memories and forgets the one she has.
        page.locator("#message-composer").get_by_role("button", name="Memories").click()
        _send(page, "show")
        page.get_by_text("What the team remembers about you", exact=False).wait_for(timeout=15_000)
        page.get_by_role("button", name="Forget 1").click()
        page.get_by_text("Forgotten:", exact=False).first.wait_for(timeout=15_000)
        _new_chat(page, server)
        _send(page, "What do you remember about me?")
        page.get_by_text("I don't remember anything about you yet", exact=False).first.wait_for(timeout=30_000)
        assert "Here is what I remember about you" not in page.content()
        alice.close()
    finally:
        server.stop()
