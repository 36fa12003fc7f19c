"""The music store's verified customer in a real browser: it stays bound to the conversation after
a server restart and a resume, and an edit that takes back the verifying message takes back the
verification (issue 15). The demo store: customer 1 is Ana Souza, customer 2 someone else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import ChorusServer
from test_browser_chat import _pick_profile, _reply_of
from test_browser_history import _add_user, _login, _send

ASKS = "verify who you are"


def _turn_over(page: Any) -> None:
    page.locator("#stop-button").wait_for(state="hidden", timeout=30_000)


def _answer(page: Any, agent: str, needle: str) -> str:
    reply = _reply_of(page, agent)
    reply.get_by_text(needle, exact=False).first.wait_for(timeout=30_000)
    _turn_over(page)
    return str(_reply_of(page, agent).inner_text())


def _user_messages(page: Any) -> Any:
    return page.locator("[data-step-type='user_message']")


def test_verification_survives_a_restart_and_an_edit_takes_it_back(browser: Any, tmp_path: Path,
                                                                     artifacts: Path) -> None:
    workdir = tmp_path / "srv"
    env = {"CHORUS_OFFLINE_TOKEN_DELAY": "0"}
    first = ChorusServer(workdir, env=env)
    workdir.mkdir(parents=True)
    _add_user(first, "alice", "alice-password")
    first.start()
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, first, "alice", "alice-password")
        _pick_profile(page, "Music store")
        page.locator("#starters").get_by_text("My invoices").wait_for(timeout=20_000)
        _send(page, "Show my invoices")
        _answer(page, "invoices", ASKS)
        _send(page, "my email is ana.souza@example.com")
        text = _answer(page, "invoices", "verified as customer 1")
        assert "Your invoices" in text
        page.locator("#thread-history").get_by_text("Show my invoices").first.wait_for(timeout=15_000)
        context.close()
    finally:
        first.stop()

    second = ChorusServer(workdir, env=env).start()  # a new process: nothing in memory
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, second, "alice", "alice-password")
        page.locator("#thread-history").get_by_text("Show my invoices").first.click()
        page.get_by_text("verified as customer 1", exact=False).first.wait_for(timeout=30_000)

        # Still Ana: her invoices at once, and another customer's details are refused.
        _send(page, "Show my invoices")
        page.locator("[data-step-type='user_message']").filter(has_text="Show my invoices").nth(1).wait_for(
            timeout=15_000)
        text = _answer(page, "invoices", "Your invoices")
        assert ASKS not in text
        _send(page, "my customer id is 2")
        text = _answer(page, "invoices", "verified as customer 1")
        assert "Your invoices" not in text and ("only share a customer's own" in text or "cannot switch" in text)
        page.screenshot(path=str(artifacts / "verification-after-restart.png"), full_page=True)

        # Edit the verifying message into something else: the conversation is no longer verified.
        verifying = _user_messages(page).filter(has_text="my email is ana.souza@example.com").first
        verifying.hover()
        verifying.locator(".edit-message").click()
        box = page.locator("#edit-chat-input")
        box.fill("Do you have the song Black Dog?")
        page.locator(".confirm-edit").click()
        _answer(page, "catalog", "Black Dog")
        _send(page, "Show my invoices")
        _answer(page, "invoices", ASKS)
        page.screenshot(path=str(artifacts / "verification-after-edit.png"), full_page=True)
        context.close()
    finally:
        second.stop()
