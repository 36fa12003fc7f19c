"""Each agent's avatar in a real browser: agents' bubbles show different pictures (a plugin's own,
or one drawn for the agent), Chorus's own messages the Chorus mark; on the page and in the widget."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FIRST_PARTY_PLUGINS, ChorusServer
from test_browser_chat import _pick_profile, _reply_of
from test_browser_history import _add_user, _login
from test_browser_history import _send as _send_on_page
from test_browser_notices import install_plugin
from test_browser_widget import SECRET, _host_page, _open_widget, _send, _Site

from chorus.widget import make_token

DRUMMER_SIZE = (40, 24)  # an odd size: the page shows this very file when its image has it


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


BAND = '''
from pathlib import Path

from chorus import AgentSpec, TeamSpec, hookimpl


@hookimpl
def chorus_register_agents():
    return [AgentSpec(name="drummer", description="Keeps the beat.", team_only=True,
                      avatar=Path(__file__).parent / "drummer.png")]


@hookimpl
def chorus_register_teams():
    return [TeamSpec(name="band", display_name="Band", type="round_robin", members=["drummer", "assistant"],
                     termination={"max_messages": 3})]
'''


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Site]:
    site = _Site(tmp_path_factory.mktemp("avatars-host"))
    yield site
    site.stop()


@pytest.fixture(scope="module")
def avatar_server(tmp_path_factory: pytest.TempPathFactory, host: _Site) -> Iterator[ChorusServer]:
    workdir = tmp_path_factory.mktemp("avatars")
    site = workdir / "site-packages"
    install_plugin(site, "chorus-e2e-band", {"band": "chorus_e2e_band"},
                   {"chorus_e2e_band/__init__.py": BAND,
                    "chorus_e2e_band/drummer.png": _png(*DRUMMER_SIZE, (255, 140, 0))})
    srv = ChorusServer(workdir, env={
        "PYTHONPATH": str(site),
        "CHORUS_PLUGINS": f"{FIRST_PARTY_PLUGINS},chorus-e2e-band",
        "CHORUS_ALLOWED_ORIGINS": f"http://127.0.0.1:{host.port}",
        "CHORUS_WIDGET_SECRET": SECRET,
        "CHORUS_MEMORY": "false",
        "CHORUS_OFFLINE_TOKEN_DELAY": "0",
    })
    _add_user(srv, "ava", "ava-password")
    srv.start()
    yield srv
    srv.stop()


def _avatar(scope: Any, author: str) -> Any:
    """The avatar image beside ``author``'s latest message, once the browser has loaded it."""
    img = scope.locator(f"img[alt='Avatar for {author}']").last
    img.wait_for(timeout=30_000)
    img.evaluate("img => img.decode()")
    return img


def _looks(page: Any, img: Any) -> str:
    """The picture an avatar shows (a digest of the image its ``<img>`` loaded). Screenshots of one
    picture differ from bubble to bubble, drawn at different sub-pixel offsets: they cannot tell."""
    response = page.request.get(img.evaluate("img => img.currentSrc"))
    assert response.ok
    return hashlib.sha256(response.body()).hexdigest()[:16]


def test_two_agents_and_chorus_show_different_avatars_on_the_page(
        browser: Any, avatar_server: ChorusServer, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        _login(page, avatar_server, "ava", "ava-password")
        _pick_profile(page, "Panel")
        page.locator("#starters").get_by_text("Say hello to the panel").wait_for(timeout=20_000)
        _send_on_page(page, "Hello panel, who are you?")
        _reply_of(page, "assistant").wait_for(timeout=30_000)
        _reply_of(page, "guide").wait_for(timeout=30_000)
        assistant, guide = _avatar(page, "assistant"), _avatar(page, "guide")
        assert _looks(page, assistant) != _looks(page, guide), "two agents show the same avatar"

        # Chorus's own messages keep the Chorus mark, unlike any agent's.
        page.locator("#message-composer").get_by_role("button", name="Export").click()
        _send_on_page(page, "please")
        page.get_by_text("Here is this conversation as MD", exact=False).wait_for(timeout=15_000)
        chorus = _avatar(page, "Chorus")
        assert _looks(page, chorus) not in (_looks(page, assistant), _looks(page, guide))
        mark = page.request.get(f"{avatar_server.url}/avatars/Chorus")
        assert mark.headers["content-type"].startswith("image/svg+xml") and "#e11d74" in mark.text()
        page.screenshot(path=str(artifacts / "avatars-page.png"))
    finally:
        context.close()


def test_a_plugin_gives_its_agent_its_own_picture(browser: Any, avatar_server: ChorusServer,
                                                   artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        _login(page, avatar_server, "ava", "ava-password")
        _pick_profile(page, "Band")
        _send_on_page(page, "Hello band")
        _reply_of(page, "drummer").wait_for(timeout=30_000)
        _reply_of(page, "assistant").wait_for(timeout=30_000)
        drummer = _avatar(page, "drummer")
        size = drummer.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert tuple(size) == DRUMMER_SIZE, f"the drummer shows another picture than the plugin's: {size}"
        assert _looks(page, drummer) != _looks(page, _avatar(page, "assistant"))
        page.screenshot(path=str(artifacts / "avatars-plugin.png"))
    finally:
        context.close()


def test_two_agents_show_different_avatars_in_the_widget(
        browser: Any, host: _Site, avatar_server: ChorusServer, artifacts: Path) -> None:
    host.page("avatars.html", _host_page(avatar_server, make_token("visitor-a", secret=SECRET, team="panel")))
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{host.port}/avatars.html")
        box = _open_widget(page)
        _send(page, box, "Hello panel, who are you?")
        widget = page.locator("#chainlit-copilot-chat")
        for agent in ("assistant", "guide"):
            widget.locator(f".chorus-author[data-author='{agent}']").first.wait_for(timeout=30_000)
        assistant, guide = _avatar(widget, "assistant"), _avatar(widget, "guide")
        assert _looks(page, assistant) != _looks(page, guide), "two agents show the same avatar in the widget"
        page.screenshot(path=str(artifacts / "avatars-widget.png"))
    finally:
        context.close()
