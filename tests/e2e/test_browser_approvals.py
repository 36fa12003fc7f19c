"""Approvals in a real browser: the music store's order waits for Approve or Deny; the pending request
comes back after a reload and after a server restart (SIGTERM), and the answer given then is acted on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import ChorusServer
from test_browser_chat import _pick_profile, _reply_of
from test_browser_history import _add_user, _login, _send

pytestmark = pytest.mark.flaky(reruns=1)

ENV = {"CHORUS_OFFLINE_TOKEN_DELAY": "0", "CHORUS_MEMORY": "false"}


def _finished(page: Any) -> None:
    page.locator("#stop-button").wait_for(state="hidden", timeout=30_000)


def _asked(page: Any, again: bool = False) -> Any:
    """The request on the page (its text and its Approve / Deny buttons), once shown."""
    lead = "Still waiting for your answer" if again else "wants to run"
    page.get_by_text(lead, exact=False).last.wait_for(timeout=30_000)
    page.get_by_text("order_track", exact=False).last.wait_for(timeout=5_000)
    approve = page.get_by_role("button", name="Approve").last
    approve.wait_for(timeout=15_000)
    return approve


def test_an_order_waits_for_approval_across_a_reload_and_a_restart(
        browser: Any, tmp_path: Path, artifacts: Path) -> None:
    workdir = tmp_path / "srv"
    workdir.mkdir()
    first = ChorusServer(workdir, env=ENV)
    _add_user(first, "ana", "ana-password")
    first.start()
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        _login(page, first, "ana", "ana-password")
        _pick_profile(page, "Music store")
        page.locator("#chat-input").wait_for(timeout=30_000)
        _send(page, "My email is ana.souza@example.com")
        _reply_of(page, "invoices").get_by_text("verified as customer 1", exact=False).wait_for(timeout=30_000)
        _finished(page)

        _send(page, "Buy the song Black Dog")
        _asked(page)
        assert "Black Dog" in _reply_of(page, "invoices").inner_text()  # the arguments, under the agent's name
        page.screenshot(path=str(artifacts / "approvals-asked.png"), full_page=True)

        # A reload: the request is still there, with its buttons, and approving it places the order.
        page.reload(wait_until="domcontentloaded")
        approve = _asked(page, again=True)
        approve.click()
        page.get_by_text("Order 1 is placed", exact=False).last.wait_for(timeout=30_000)
        _finished(page)
        page.screenshot(path=str(artifacts / "approvals-approved-after-reload.png"), full_page=True)

        # Another request, then the server stops (SIGTERM) while it waits.
        _send(page, "Buy the song Stairway To Heaven")
        _asked(page)
        thread_url = page.url
        context.close()
    finally:
        first.stop()

    second = ChorusServer(workdir, env=ENV)
    second.port, second.url = first.port, first.url  # the same address, as after a restart
    second.start()
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        _login(page, second, "ana", "ana-password")
        page.goto(thread_url, wait_until="domcontentloaded")
        _asked(page, again=True)
        assert "Stairway To Heaven" in _reply_of(page, "invoices").inner_text()
        page.get_by_role("button", name="Deny").last.click()
        page.get_by_text("Not run: the user denied order_track", exact=False).last.wait_for(timeout=30_000)
        _finished(page)
        page.screenshot(path=str(artifacts / "approvals-denied-after-restart.png"), full_page=True)

        # Only the approved order was placed; nothing is waiting any more, even after another reload.
        _send(page, "What did I order?")
        listed = _reply_of(page, "invoices")
        listed.get_by_text("Black Dog", exact=False).wait_for(timeout=30_000)
        assert "Stairway" not in listed.inner_text()
        page.reload(wait_until="domcontentloaded")
        page.get_by_text("What did I order?", exact=True).first.wait_for(timeout=30_000)
        assert page.get_by_role("button", name="Approve").count() == 0
        context.close()
    finally:
        second.stop()
