"""A server with a broken plugin, in a real browser: its users see a warning above the composer
and still get every team's starters (a chat message would hide them: Chainlit shows starters
only in an empty chat), on the page; in the widget the warning is there too, and the chat stays
empty. No plugin name or server path is shown."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FIRST_PARTY_PLUGINS, ChorusServer, free_port
from test_browser_chat import _pick_profile
from test_browser_history import _add_user, _login
from test_browser_widget import SECRET, _host_page, _open_widget, _Site

from chorus.turn import MEMORY_NOTICE, PROBLEMS_NOTICE
from chorus.widget import make_token

BROKEN = "chorus_e2e_broken_secret_module"  # a name that must never reach the page


def install_plugin(site: Path, dist: str, entry_points: dict[str, str], files: dict[str, str | bytes]) -> None:
    """Install distribution ``dist`` into ``site`` (a directory put on the server's PYTHONPATH):
    its ``chorus`` entry points and files (modules, packages, data), as pip would."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[chorus]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for name, content in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Site]:
    site = _Site(tmp_path_factory.mktemp("notices-host"))
    yield site
    site.stop()


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory: pytest.TempPathFactory, host: _Site) -> Iterator[ChorusServer]:
    workdir = tmp_path_factory.mktemp("broken-plugin")
    site = workdir / "site-packages"
    install_plugin(site, "chorus-e2e-broken", {"broken": BROKEN},
                   {f"{BROKEN}.py": "raise RuntimeError(f'cannot read {__file__}')\n"})
    srv = ChorusServer(workdir, env={
        "PYTHONPATH": str(site),
        "CHORUS_PLUGINS": f"{FIRST_PARTY_PLUGINS},chorus-e2e-broken",
        "CHORUS_ALLOWED_ORIGINS": f"http://127.0.0.1:{host.port}",
        "CHORUS_WIDGET_SECRET": SECRET,
        "CHORUS_CHROMA_URL": f"http://127.0.0.1:{free_port()}",  # a Chroma server that is down
    })
    _add_user(srv, "nora", "nora-password")
    srv.start()
    try:
        assert "chorus-e2e-broken" in srv.output() or BROKEN in srv.output()  # the operator's log says which
        deadline = time.monotonic() + 60
        while "memory and knowledge are off" not in srv.output():  # found while the server starts
            assert time.monotonic() < deadline, srv.output()[-3000:]
            time.sleep(0.3)
        yield srv
    finally:
        srv.stop()


def _assert_no_internals(text: str, server: ChorusServer) -> None:
    assert BROKEN not in text and "chorus-e2e-broken" not in text and "RuntimeError" not in text
    assert str(server.workdir) not in text and "cannot read" not in text
    assert server.env["CHORUS_CHROMA_URL"] not in text  # where memory lives is the operator's business


def test_the_page_shows_the_warning_and_the_starters(browser: Any, broken_server: ChorusServer,
                                                      artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        _login(page, broken_server, "nora", "nora-password")
        page.get_by_text("plugins or team files are broken", exact=False).first.wait_for(timeout=20_000)
        page.wait_for_timeout(1_000)
        starters = page.locator("#starters")
        assert starters.get_by_text("Time in Tokyo").is_visible(), "the warning hid the starters"
        warning = page.locator("#chorus-warnings")
        assert warning.is_visible() and PROBLEMS_NOTICE in warning.inner_text()
        assert MEMORY_NOTICE in warning.inner_text()
        assert page.locator("[data-step-type='assistant_message']").count() == 0  # no message hides them
        _assert_no_internals(page.locator("body").inner_text(), broken_server)
        page.screenshot(path=str(artifacts / "notices-page.png"))

        # Another team: its starters show, and the warning still does.
        _pick_profile(page, "Panel")
        page.locator("#starters").get_by_text("Say hello to the panel").wait_for(timeout=20_000)
        page.locator("#chorus-warnings").get_by_text("plugins or team files are broken",
                                                     exact=False).wait_for(timeout=20_000)
    finally:
        context.close()


def test_the_widget_shows_the_warning_and_the_starters(browser: Any, host: _Site, broken_server: ChorusServer,
                                                        artifacts: Path) -> None:
    host.page("broken.html", _host_page(broken_server, make_token("visitor-n", secret=SECRET)))
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{host.port}/broken.html")
        _open_widget(page)
        widget = page.locator("#chainlit-copilot-chat")
        widget.get_by_text("plugins or team files are broken", exact=False).first.wait_for(timeout=20_000)
        page.wait_for_timeout(1_000)
        # Chainlit's copilot shows no starters at all (it never loads them), but the chat stays empty
        # for the visitor's first message, and the warning sits above the composer.
        assert widget.locator("[data-step-type='assistant_message']").count() == 0, "the warning is a message"
        warning = widget.locator("#chorus-warnings")
        assert warning.is_visible() and PROBLEMS_NOTICE in warning.inner_text()
        assert MEMORY_NOTICE in warning.inner_text()
        _assert_no_internals(widget.inner_text(), broken_server)
        page.screenshot(path=str(artifacts / "notices-widget.png"))
    finally:
        context.close()
