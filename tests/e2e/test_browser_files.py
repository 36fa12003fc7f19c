"""A file attached in the page is searchable in the conversation's later messages, after a restart
too, and by no one else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import ChorusServer
from test_browser_history import _add_user, _attach, _login, _send

FOUND = "store-policy.md (attached in this conversation) says about that"


def test_a_file_attached_earlier_is_searched_in_later_messages(browser: Any, tmp_path: Path, artifacts: Path) -> None:
    workdir = tmp_path / "srv"
    workdir.mkdir(parents=True)
    env = {"CHORUS_OFFLINE_TOKEN_DELAY": "0"}
    first = ChorusServer(workdir, env=env)
    _add_user(first, "erin", "erin-password")
    _add_user(first, "fred", "fred-password")
    first.start()
    policy = tmp_path / "store-policy.md"
    policy.write_text("# Store policy\n\n## Refunds\n\nRefunds are paid as store credit only, never in cash.\n\n"
                      "## Shipping\n\nShipping costs 7 euros on every order.\n", encoding="utf-8")
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, first, "erin", "erin-password")
        _attach(page, policy)
        _send(page, "Here is our store policy.")
        page.get_by_text("Here is what the attached file says", exact=False).first.wait_for(timeout=60_000)

        # A later message, with no file: answered from the file, which it names.
        _send(page, "What does the file I attached say about refunds?")
        try:
            answer = page.get_by_text(FOUND, exact=False).first
            answer.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(artifacts / "attached-file-later.png"))
        assert page.get_by_text("store-policy.md › Store policy › Refunds", exact=False).count() >= 1
        assert "five working days" not in page.content()  # not the knowledge base's refund rule
        context.close()
    finally:
        first.stop()

    again = ChorusServer(workdir, env=env).start()
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, again, "erin", "erin-password")
        page.locator("#thread-history").get_by_text("Here is our store policy.").click()
        page.get_by_text("What does the file I attached say about refunds?").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1_000)  # the resumed thread's session is set up
        assert "7 euros" not in page.content()  # not said so far: only the file can say it
        _send(page, "What does my document say about shipping?")
        try:
            page.get_by_text("Shipping costs 7 euros on every order.", exact=False).first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(artifacts / "attached-file-after-restart.png"))
        context.close()

        # Another user asking the same finds nothing of erin's.
        context = browser.new_context()
        other = context.new_page()
        _login(other, again, "fred", "fred-password")
        _send(other, "What does the file I attached say about shipping?")
        other.get_by_text("No file has been attached in this conversation", exact=False).first.wait_for(
            timeout=60_000)
        assert "7 euros" not in other.content()
        context.close()
    finally:
        again.stop()
