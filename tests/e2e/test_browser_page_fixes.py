"""What users saw on the page (issue 15), in a real browser against a real `chorus run` with accounts:

- a resumed conversation shows its own team in the header;
- the Export command after a resume is neither an empty bubble nor an empty section of the export;
- deleting the open conversation, or opening a deleted one's address, says so plainly and starts a
  new chat, and logs no error;
- the new-chat dialog does not claim the chat history is cleared when history is kept;
- page loads do not log "Translated markdown file ... not found";
- the "trace in MLflow" link reaches the UI `chorus mlflow --port N` serves.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, ROOT, ChorusServer, chinook_path
from test_browser_history import _add_user, _login, _send
from workers import free_port

USERS = ("alice", "bob", "carol", "dave", "erin")
DELETED = "That conversation was deleted"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusServer]:
    """A server started as in a fresh clone (the repository's .chainlit/config.toml and chainlit.md,
    nothing Chainlit generates), with accounts and the Music store team."""
    workdir = tmp_path_factory.mktemp("page-fixes")
    (workdir / ".chainlit").mkdir()
    shutil.copy(ROOT / ".chainlit" / "config.toml", workdir / ".chainlit" / "config.toml")
    shutil.copy(ROOT / "chainlit.md", workdir / "chainlit.md")
    server = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0",
                                        "CHORUS_MUSIC_STORE_URL": str(chinook_path())})
    for user in USERS:
        _add_user(server, user, f"{user}-password")
    server.start()
    yield server
    server.stop()


def _page(browser: Any, server: ChorusServer, user: str) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    _login(page, server, user, f"{user}-password")
    return page


def _header_team(page: Any) -> str:
    return str(page.locator("#chat-profiles").inner_text()).strip()


def _wait_for_header(page: Any, team: str, timeout_s: float = 10) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        shown = _header_team(page)
        if shown == team or time.monotonic() > deadline:
            return shown
        page.wait_for_timeout(200)


def _thread_id(page: Any) -> str:
    path = page.url.split("?")[0].rstrip("/")
    assert "/thread/" in path, page.url
    return str(path.rsplit("/", 1)[-1])


def _user_bubbles(page: Any) -> list[str]:
    return [str(m.inner_text()).strip() for m in page.locator("[data-step-type='user_message']").all()]


def _export(page: Any, server: ChorusServer, text: str = "") -> str:
    """Use the composer's Export command (with ``text``, or none) and return the file's content."""
    before = page.get_by_text("Here is this conversation as MD", exact=False).count()
    page.locator("#message-composer").get_by_role("button", name="Export").click()
    box = page.locator("#chat-input")
    box.click()
    box.fill(text)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "n => [...document.querySelectorAll('[data-step-type=\"assistant_message\"]')]"
        ".filter(e => e.innerText.includes('Here is this conversation as MD')).length > n", arg=before,
        timeout=20_000)
    href = page.locator("a[download], a[href*='/project/file/']").last.get_attribute("href", timeout=5_000)
    assert href
    response = page.request.get(href if href.startswith("http") else server.url + href)
    assert response.ok
    return str(response.text())


def _empty_sections(markdown: str) -> list[str]:
    """The headings of sections with nothing under them."""
    parts = re.split(r"(?m)^(## .*)$", markdown)
    return [parts[i] for i in range(1, len(parts), 2) if not parts[i + 1].strip()]


def _delete_from_sidebar(page: Any, title: str) -> None:
    item = page.locator("#thread-history li").filter(has_text=title).first
    item.hover()
    item.locator("#thread-options").click()
    page.get_by_role("menuitem", name="Delete").click()
    page.get_by_role("button", name="Confirm").click()


def test_a_resumed_conversation_shows_its_own_team(browser: Any, site: ChorusServer, artifacts: Path) -> None:
    page = _page(browser, site, "alice")
    page.locator("#chat-profiles").click()
    page.get_by_role("option", name="Music store").click()
    if page.locator("#confirm").count():
        page.locator("#confirm").click()
    assert _wait_for_header(page, "Music store") == "Music store"
    _send(page, "What albums does AC/DC have?")
    page.get_by_text("Let There Be Rock", exact=False).first.wait_for(timeout=30_000)
    page.locator("#thread-history").get_by_text("What albums does AC/DC have?").first.wait_for(timeout=15_000)
    thread_url = page.url

    # Another chat with the default team, then back to the Music store one from the history.
    page.goto(site.url)
    page.locator("#chat-input").wait_for(timeout=30_000)
    assert _wait_for_header(page, "Chorus") == "Chorus"
    page.locator("#thread-history").get_by_text("What albums does AC/DC have?").first.click()
    page.get_by_text("Let There Be Rock", exact=False).first.wait_for(timeout=30_000)
    shown = _wait_for_header(page, "Music store")
    page.screenshot(path=str(artifacts / "resumed-team-header.png"))
    assert shown == "Music store"

    # Opened by its address (a bookmark, a reload), too; and the Music store team answers.
    page.goto(thread_url)
    page.get_by_text("Let There Be Rock", exact=False).first.wait_for(timeout=30_000)
    assert _wait_for_header(page, "Music store") == "Music store"
    _send(page, "Do you have the song Black Dog?")
    answer = page.get_by_text("Yes, we have", exact=False).first
    try:  # a resumed team is rebuilt and its state restored first: on a loaded machine that takes a while
        answer.wait_for(timeout=30_000)
    except Exception:
        # Known Chainlit page race, seen only on a loaded machine: the page reconnects when a resume
        # switches its chat profile, and a reply streamed across that reconnect can miss the live
        # view. The reply is stored: the user sees it on a reload, which is what is checked then.
        page.screenshot(path=str(artifacts / "resumed-team-answers-live.png"))
        page.reload()
        answer.wait_for(timeout=30_000)
    finally:
        page.screenshot(path=str(artifacts / "resumed-team-answers.png"))
    page.context.close()


def test_export_after_a_resume_has_no_empty_bubble_or_section(browser: Any, site: ChorusServer,
                                                               artifacts: Path) -> None:
    page = _page(browser, site, "bob")
    _send(page, "What time is it in Tokyo?")
    page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
    first = _export(page, site)  # the command alone, no text
    assert "## bob" in first and "Asia/Tokyo" in first
    assert _empty_sections(first) == [], first

    page.reload()  # resume the conversation
    page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
    page.get_by_text("Here is this conversation as MD", exact=False).first.wait_for(timeout=10_000)
    bubbles = _user_bubbles(page)
    page.screenshot(path=str(artifacts / "export-after-resume.png"))
    assert bubbles == ["What time is it in Tokyo?", "Export"], bubbles

    again = _export(page, site)
    assert "Asia/Tokyo" in again and "Here is this conversation as MD" in again
    assert _empty_sections(again) == [], again
    assert "**Export**" in again  # the earlier request, as the page shows it
    page.context.close()


def test_deleting_the_open_conversation_says_so_and_starts_a_new_chat(browser: Any, site: ChorusServer,
                                                                      artifacts: Path) -> None:
    page = _page(browser, site, "carol")
    _send(page, "What time is it in Tokyo?")
    page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
    history = page.locator("#thread-history")
    history.get_by_text("What time is it in Tokyo?").wait_for(timeout=15_000)
    deleted_url = page.url
    deleted_id = _thread_id(page)

    _delete_from_sidebar(page, "What time is it in Tokyo?")
    page.get_by_text(DELETED, exact=False).first.wait_for(timeout=15_000)
    page.locator("#chat-input").wait_for(timeout=30_000)
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(artifacts / "deleted-open-conversation.png"))
    assert page.get_by_text("Asia/Tokyo", exact=False).count() == 0  # the screen was cleared
    assert history.get_by_text("What time is it in Tokyo?").count() == 0

    # Its address, opened again (a bookmark, another tab): said plainly, and a new chat.
    page.goto(deleted_url)
    page.get_by_text(DELETED, exact=False).first.wait_for(timeout=15_000)
    page.locator("#chat-input").wait_for(timeout=30_000)
    page.wait_for_timeout(2_000)
    page.screenshot(path=str(artifacts / "deleted-conversation-address.png"))
    body = str(page.locator("body").inner_text())
    assert "Could not reach the server" not in body and "Couldn't resume chat" not in body
    assert "Asia/Tokyo" not in body
    assert history.get_by_text("Untitled Conversation").count() == 0  # nothing came back

    _send(page, "What time is it in Paris?")  # a new conversation, not the deleted one's
    page.get_by_text("Europe/Paris", exact=False).first.wait_for(timeout=30_000)
    history.get_by_text("What time is it in Paris?").wait_for(timeout=15_000)
    page.wait_for_timeout(1_000)
    assert _thread_id(page) != deleted_id
    page.context.close()  # its socket closes: Chainlit saves the session, which must not revive the thread

    page = _page(browser, site, "carol")
    page.locator("#thread-history").get_by_text("What time is it in Paris?").first.wait_for(timeout=15_000)
    titles = str(page.locator("#thread-history").inner_text())
    assert "Tokyo" not in titles and "Untitled Conversation" not in titles, titles
    page.context.close()
    log = site.output()
    assert "Authorization for the thread failed" not in log
    assert not [line for line in log.splitlines() if line.startswith("ERROR") and "thread" in line.lower()], log[-3000:]


def test_the_new_chat_dialog_says_the_conversation_is_kept(browser: Any, site: ChorusServer,
                                                          artifacts: Path) -> None:
    page = _page(browser, site, "dave")
    _send(page, "What time is it in Tokyo?")
    page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
    page.locator("#new-chat-button").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(timeout=10_000)
    text = str(dialog.inner_text())
    page.screenshot(path=str(artifacts / "new-chat-dialog.png"))
    assert "clear your current chat history" not in text
    assert "kept" in text and "history" in text
    page.get_by_role("button", name="Confirm").click()
    # it was kept (.first: the newest; a rerun of this test adds a second chat of the same title)
    page.locator("#thread-history").get_by_text("What time is it in Tokyo?").first.wait_for(timeout=15_000)
    page.context.close()


def test_page_loads_do_not_log_a_missing_translated_markdown_file(browser: Any, site: ChorusServer) -> None:
    page = _page(browser, site, "erin")
    for _ in range(3):
        page.reload()
        page.locator("#chat-input").wait_for(timeout=30_000)
    page.get_by_role("button", name="Readme").click()  # the welcome text (chainlit.md) is still served
    page.get_by_text("Welcome to Chorus").first.wait_for(timeout=10_000)
    page.context.close()
    log = site.output()
    assert "Translated markdown file" not in log, log[-2000:]
    assert "Translation file for" not in log, log[-2000:]


# -- the trace link and `chorus mlflow --port N` ---------------------------------------------------

MLFLOW_START_S = 240  # 20-30 s idle; over 100 s measured on a loaded 2-core machine


def _start_chorus_mlflow(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHORUS_HOME": str(home)}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "chorus.cli", "mlflow", "--port", str(port)], cwd=home.parent,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop_session(proc: subprocess.Popen[bytes]) -> None:
    """Stop `chorus mlflow` (which stops its server), then anything of its session still left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[3]) == proc.pid and fields[0] != "Z":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)


def test_the_trace_link_reaches_the_ui_chorus_mlflow_serves_on_its_port(browser: Any, tmp_path: Path,
                                                                         artifacts: Path) -> None:
    import httpx

    workdir = tmp_path / "srv"
    server = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0", "CHORUS_TRACING": "true"})
    server.start()  # before the UI: the link must follow a UI started later
    home = Path(server.env["CHORUS_HOME"])
    port = free_port()
    ui: subprocess.Popen[bytes] | None = None
    try:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(server.url)
        page.locator("#chat-input").wait_for(timeout=30_000)
        _send(page, "What time is it in Tokyo?")
        page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
        page.get_by_text("tokens and cost", exact=False).first.click()
        link = page.get_by_role("link", name="trace in MLflow")
        link.wait_for(timeout=10_000)
        href = link.get_attribute("href")
        assert href
        for _ in range(60):  # the trace is written in the background
            if page.request.get(server.url + href, max_redirects=0).status != 404:
                break
            page.wait_for_timeout(1_000)

        # (Started once the server has made its MLflow store: two processes creating one SQLite
        # store at the same moment can fail MLflow's migrations.)
        ui = _start_chorus_mlflow(home, port, tmp_path / "mlflow.log")
        deadline = time.monotonic() + MLFLOW_START_S
        while True:
            if ui.poll() is not None:
                pytest.fail(f"`chorus mlflow` exited:\n{(tmp_path / 'mlflow.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                message = f"the MLflow UI did not start within {MLFLOW_START_S} s"
                if IN_CI:
                    pytest.fail(message)
                pytest.skip(message)
            time.sleep(0.5)

        with page.context.expect_page() as opened:  # Chainlit opens links in a new tab
            link.click()
        ui_page = opened.value
        ui_page.wait_for_load_state("domcontentloaded")
        assert ui_page.url.startswith(f"http://127.0.0.1:{port}/"), ui_page.url
        # MLflow's page of this turn's trace: it shows the turn's question.
        ui_page.get_by_text("What time is it in Tokyo?", exact=False).first.wait_for(timeout=60_000)
        ui_page.screenshot(path=str(artifacts / "trace-link-mlflow-ui.png"))
        page.context.close()
    finally:
        if ui is not None:
            _stop_session(ui)
        server.stop()
