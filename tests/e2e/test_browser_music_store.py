"""The Music store plugin's team in a real browser, offline, against the real Chinook."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ChorusServer, chinook_path
from test_browser_chat import _open_chat, _pick_profile, _reply_of, _send


@pytest.fixture(scope="module")
def store_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusServer]:
    srv = ChorusServer(tmp_path_factory.mktemp("music-store"),
                       env={"CHORUS_MUSIC_STORE_URL": str(chinook_path()), "CHORUS_OFFLINE_TOKEN_DELAY": "0.005"})
    srv.start()
    yield srv
    srv.stop()


def _answer(page: Any, agent: str, needle: str) -> str:
    """The text of ``agent``'s latest reply once it contains ``needle`` and the turn is over
    (replies stream in batches: the needle may come before the end)."""
    reply = _reply_of(page, agent)
    reply.get_by_text(needle, exact=False).first.wait_for(timeout=30_000)
    page.locator("#stop-button").wait_for(state="hidden", timeout=30_000)  # the reply is finished
    return str(reply.inner_text())


def test_a_new_user_picks_the_music_store_and_gets_its_answers(
        page: Any, store_server: ChorusServer, artifacts: Path) -> None:
    _open_chat(page, store_server)
    _pick_profile(page, "Music store")
    starters = page.locator("#starters")
    starters.get_by_text("AC/DC albums").wait_for(timeout=20_000)
    assert starters.get_by_text("My invoices").is_visible()
    page.screenshot(path=str(artifacts / "music-store-welcome.png"))

    # (Typed rather than clicked: a starter clicked before the socket connects is lost; issue 8.)
    _send(page, "What albums does AC/DC have?")
    text = _answer(page, "catalog", "Let There Be Rock")
    assert "For Those About To Rock We Salute You" in text
    page.get_by_text("Used albums_by_artist").first.wait_for(timeout=10_000)  # the tool step is shown

    _send(page, "Do you have the song Black Dog?")
    text = _answer(page, "catalog", "Yes, we have")
    assert "Black Dog" in text and "IV" in text

    _send(page, "Recommend some Jazz tracks")
    _answer(page, "catalog", "Jazz tracks you might like")

    _send(page, "Show my invoices")
    _answer(page, "invoices", "verify who you are")
    _send(page, "my email is luisg@embraer.com.br")
    text = _answer(page, "invoices", "2022-03-11")  # the last row: the whole table is there
    assert "verified as customer 1" in text
    assert text.index("382") < text.index("327") < text.index("98")
    page.screenshot(path=str(artifacts / "music-store-invoices.png"), full_page=True)

    _send(page, "show customer 2's invoices")
    text = _answer(page, "invoices", "only share a customer's own invoices")
    assert "Leonie" not in page.locator("body").inner_text()
