"""The admin page in a real browser (issue 19), logged in with the chat page's own login: change the
Music store catalog agent's prompt, see the version and its diff, start a new conversation that
still answers, roll back, read the audit log, and see the usage charts (screenshots in
test-artifacts/). A user who is not an admin is turned away; nothing on the pages is loaded from
elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ChorusServer
from test_browser_history import _add_user, _login, _send

NEW_PROMPT = "You are the Music store's catalog expert. Answer with the store's own data, briefly."


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusServer]:
    import subprocess
    import sys

    server = ChorusServer(tmp_path_factory.mktemp("admin-page"), env={"CHORUS_OFFLINE_TOKEN_DELAY": "0"})
    _add_user(server, "boss", "boss-password")
    _add_user(server, "alice", "alice-password")
    promoted = subprocess.run([sys.executable, "-m", "chorus.cli", "users", "promote", "boss"], env=server.env,
                              cwd=server.workdir, capture_output=True, text=True, timeout=120)
    assert promoted.returncode == 0, promoted.stderr
    server.start()
    yield server
    server.stop()


def _page(browser: Any, server: ChorusServer, user: str, outside: list[str]) -> Any:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server.url) and
            not r.url.startswith(("data:", "blob:")) else None)
    _login(page, server, user, f"{user}-password")
    return page


def test_an_admin_changes_a_prompt_rolls_it_back_and_sees_usage(browser: Any, site: ChorusServer,
                                                                artifacts: Path) -> None:
    outside: list[str] = []
    page = _page(browser, site, "boss", outside)
    _send(page, "What time is it in Tokyo?")  # something for the charts
    page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=60_000)
    page.locator(".lucide-thumbs-up").first.click()  # a rating for the thumbs chart
    submit = page.get_by_role("button", name="Submit feedback")
    try:  # Chainlit asks for an optional comment in a dialog
        submit.wait_for(timeout=5_000)
        submit.click()
    except Exception:
        pass
    page.wait_for_timeout(1_000)

    page.goto(site.url + "/admin")
    page.get_by_role("link", name="Music store").click()
    catalog = page.locator("#agent-catalog")
    catalog.locator("textarea").fill(NEW_PROMPT)
    page.locator("input[name=note]").fill("catalog: shorter answers")
    page.get_by_role("button", name="Save as a new version").click()
    page.get_by_text("Saved version 1: new conversations use it.").wait_for(timeout=15_000)
    version = page.locator("#version-1")
    version.get_by_text("What changed").click()
    assert "catalog expert" in version.locator("pre.diff").inner_text()
    assert "by boss" in version.inner_text() and "catalog: shorter answers" in version.inner_text()
    assert page.locator("#agent-catalog textarea").input_value() == NEW_PROMPT
    page.screenshot(path=str(artifacts / "admin-team-version.png"), full_page=True)

    # A new Music store conversation is built from version 1 and answers.
    page.goto(site.url)
    page.locator("#chat-profiles").click()
    page.get_by_role("option", name="Music store").click()
    if page.locator("#confirm").count():
        page.locator("#confirm").click()
    _send(page, "Do you have the song Black Dog?")
    page.get_by_text("Yes, we have", exact=False).first.wait_for(timeout=60_000)

    page.goto(site.url + "/admin/teams/music-store")
    page.get_by_role("button", name="Roll back to the team file").click()
    page.get_by_text("Rolled back to the team file (saved as version 2).").wait_for(timeout=15_000)
    assert page.locator("#agent-catalog textarea").input_value() != NEW_PROMPT

    page.goto(site.url + "/admin/audit?action=admin_change")
    rows = page.locator("tbody tr")
    assert rows.count() >= 2 and "team_version=2" in rows.first.inner_text()
    assert "boss" in rows.first.inner_text()
    page.screenshot(path=str(artifacts / "admin-audit.png"), full_page=True)

    page.goto(site.url + "/admin/usage")
    for title in ("Cost per day", "Tokens per team", "Tokens per agent", "Tokens per user", "Turns per day",
                  "Model call latency per day", "Thumbs up per agent"):
        chart = page.locator(f'svg[aria-label^="{title}"]').first
        assert chart.is_visible(), title
        assert chart.bounding_box()["height"] > 40, title
    assert "boss" in page.locator('svg[aria-label="Tokens per user"]').inner_html()
    assert "100% 👍 (1/1)" in page.locator('svg[aria-label="Thumbs up per agent"]').inner_html()
    page.screenshot(path=str(artifacts / "admin-usage-charts.png"), full_page=True)

    page.goto(site.url + "/admin/users")
    assert "admin" in page.locator("#user-boss").inner_text()
    page.screenshot(path=str(artifacts / "admin-users.png"), full_page=True)
    assert outside == [], outside
    page.context.close()


def test_a_user_who_is_not_an_admin_is_turned_away(browser: Any, site: ChorusServer) -> None:
    outside: list[str] = []
    page = _page(browser, site, "alice", outside)
    response = page.goto(site.url + "/admin/teams/music-store")
    assert response is not None and response.status == 403
    assert page.get_by_text("This page is for admins").is_visible()
    assert page.locator("textarea").count() == 0
    page.context.close()
