"""Tools and keys in a real browser: the Units team answers with a tool of its MCP server (started
over stdio by the server), and a user brings their own provider key through the page's settings
dialog, typed masked, used for their next message, shown as its last four characters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ChorusServer
from fake_openai import FakeOpenAI, FakeResponse
from test_browser_chat import _pick_profile, _reply_of
from test_browser_history import _add_user, _login, _send

KEY = "sk-browser-OWN-5e6f7a8b"


def test_the_units_team_answers_with_its_mcp_servers_tool(page: Any, server: ChorusServer, artifacts: Path) -> None:
    page.goto(server.url, wait_until="domcontentloaded")
    page.locator("#chat-input").wait_for(state="visible", timeout=30_000)
    _pick_profile(page, "Units")
    page.locator("#chat-input").wait_for(timeout=30_000)
    _send(page, "Convert 10 km to miles")
    _reply_of(page, "converter").get_by_text("6.21 miles", exact=False).wait_for(timeout=60_000)
    page.get_by_text("units__km_to_miles", exact=False).first.wait_for(timeout=10_000)  # the tool's step
    page.screenshot(path=str(artifacts / "tools-mcp-units.png"), full_page=True)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChorusServer, FakeOpenAI]]:
    workdir = tmp_path_factory.mktemp("browser-keys")
    agents = workdir / "agents"
    agents.mkdir()
    (agents / "solo.yaml").write_text("name: solo\ntype: round_robin\nmembers: [assistant]\ndefault: true\n"
                                      "termination:\n  max_messages: 2\n")
    with FakeOpenAI(default=FakeResponse(text_chunks=["Answered ", "by ", "the ", "fake."])) as fake:
        srv = ChorusServer(workdir, env={"CHORUS_MEMORY": "false", "CHORUS_AGENTS_DIR": str(agents),
                                         "CHORUS_MODEL": "openai/house-model", "CHORUS_MODEL_API_BASE": fake.url,
                                         "CHORUS_MODEL_API_KEY": "sk-house-1234-5678",
                                         "CHORUS_PERSONAL_KEY_API_BASE": fake.url})
        _add_user(srv, "kate", "kate-password")
        srv.start()
        try:
            yield srv, fake
        finally:
            srv.stop()


def test_a_user_enters_their_own_key_in_the_settings_and_their_next_message_uses_it(
        browser: Any, keyed: tuple[ChorusServer, FakeOpenAI], artifacts: Path) -> None:
    srv, fake = keyed
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    _login(page, srv, "kate", "kate-password")
    page.locator("#chat-settings-open-modal").click()
    field = page.locator("#provider_key")
    field.wait_for(timeout=15_000)
    assert field.get_attribute("type") == "password"  # typed masked (chorus.js)
    field.fill(KEY)
    page.locator("#provider_model").fill("openai/kate-model")
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("is saved, encrypted", exact=False).first.wait_for(timeout=30_000)
    page.get_by_text("••••7a8b", exact=False).first.wait_for(timeout=5_000)
    _send(page, "Hello with my key")
    _reply_of(page, "assistant").get_by_text("Answered by the fake.", exact=False).wait_for(timeout=60_000)
    assert fake.headers[-1]["authorization"] == f"Bearer {KEY}" and fake.requests[-1]["model"] == "kate-model"

    # Reopened, the settings show only the last four characters, never the key.
    page.locator("#chat-settings-open-modal").click()
    page.locator("#provider_key").wait_for(timeout=15_000)
    assert page.locator("#provider_key").input_value() == ""
    assert "••••7a8b" in (page.locator("#provider_key").get_attribute("placeholder") or "")
    assert KEY not in page.content()
    page.screenshot(path=str(artifacts / "tools-own-key-settings.png"), full_page=True)
    page.context.close()
