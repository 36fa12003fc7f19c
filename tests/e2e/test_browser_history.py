"""Accounts and history in a real browser: log in, chat, restart the server, resume; users stay apart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ChorusServer, fresh_postgres_database


def _add_user(server: ChorusServer, name: str, password: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chorus.cli", "users", "add", name, "--password-stdin"],
        input=password + "\n", capture_output=True, text=True, env=server.env, cwd=server.workdir, timeout=120,
    )
    assert result.returncode == 0, result.stderr


def _login(page: Any, server: ChorusServer, name: str, password: str) -> None:
    page.goto(server.url, wait_until="domcontentloaded")
    page.locator("#email").fill(name)
    page.locator("#password").fill(password)
    page.keyboard.press("Enter")
    page.locator("#chat-input").wait_for(timeout=30_000)


def _send(page: Any, text: str) -> None:
    """Type and send, as a user does: again while the page is still connecting, and once more if
    the message never showed up (a socket that reconnected under load drops what was sent then)."""
    box = page.locator("#chat-input")
    bubbles = page.get_by_text(text, exact=True)
    shown = bubbles.count()
    for _ in range(2):
        box.fill(text)
        for _ in range(15):
            page.keyboard.press("Enter")
            try:
                page.wait_for_function("() => document.querySelector('#chat-input').value === ''", timeout=1_500)
                break
            except Exception:
                box.click()
        else:
            pytest.fail("the message was never sent")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if bubbles.count() > shown:
                return
            page.wait_for_timeout(200)
    pytest.fail(f"the message {text!r} never showed up on the page")


def _attach(page: Any, path: Path) -> None:
    """Attach a file with the composer's paperclip, again if the upload failed.

    Chainlit shows the file at once and removes it when the upload fails ("Session not found"
    while the page's socket is still connecting), so the file must still be there a moment later.
    """
    chip = page.locator("#message-composer").get_by_text(path.name)
    for _ in range(10):
        page.locator("input[type=file]").first.set_input_files(str(path))
        try:
            chip.wait_for(timeout=3_000)
            page.wait_for_timeout(2_000)
            if chip.count():  # still there: the upload went through
                return
        except Exception:
            pass
        page.wait_for_timeout(1_000)
    pytest.fail(f"{path.name} could not be attached")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Server settings for each database: SQLite in the data directory, or a fresh PostgreSQL one."""
    if request.param == "sqlite":
        yield {}
        return
    with fresh_postgres_database() as url:
        yield {"CHORUS_DATABASE_URL": url}


def test_login_chat_restart_resume_and_isolation(
    browser: Any, tmp_path: Path, artifacts: Path, database: dict[str, str]
) -> None:
    workdir = tmp_path / "srv"
    first = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0", **database})
    workdir.mkdir(parents=True)
    _add_user(first, "alice", "alice-password")
    _add_user(first, "bob", "bob-password")
    first.start()
    try:
        alice = browser.new_context()
        page = alice.new_page()
        _login(page, first, "alice", "alice-password")
        _send(page, "What time is it in Tokyo?")
        page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
        page.locator("#thread-history").get_by_text("What time is it in Tokyo?").wait_for(timeout=15_000)
        thread_url = page.url
        alice.close()
    finally:
        first.stop()

    second = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0", **database}).start()  # new process
    try:
        alice = browser.new_context()
        page = alice.new_page()
        _login(page, second, "alice", "alice-password")
        page.locator("#thread-history").get_by_text("What time is it in Tokyo?").click()
        page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
        thread_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        assert thread_id and thread_id in thread_url
        _send(page, "What time is it in Paris?")
        page.get_by_text("Europe/Paris", exact=False).first.wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts / f"history-resumed-{(database and 'postgresql') or 'sqlite'}.png"))
        assert "no saved memory" not in page.content()  # the team's checkpoint was found

        # Export from the page: the composer's Export command gives a Markdown file.
        page.locator("#message-composer").get_by_role("button", name="Export").click()
        _send(page, "please")
        page.get_by_text("Here is this conversation as MD", exact=False).wait_for(timeout=15_000)
        href = page.locator("a[download], a[href*='/project/file/']").last.get_attribute("href", timeout=5_000)
        assert href
        exported = page.request.get(href if href.startswith("http") else second.url + href)
        assert exported.ok
        assert "## assistant" in exported.text() and "Europe/Paris" in exported.text()
        alice.close()

        # And from the command line, as JSON.
        cli = subprocess.run(
            [sys.executable, "-m", "chorus.cli", "export", thread_id, "--format", "json"],
            capture_output=True, text=True, env=second.env, cwd=second.workdir, timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        texts = [s["text"] for s in json.loads(cli.stdout)["steps"] if s["kind"] == "message"]
        assert "What time is it in Tokyo?" in texts and "What time is it in Paris?" in texts

        bob = browser.new_context()
        page = bob.new_page()
        _login(page, second, "bob", "bob-password")
        assert page.locator("#thread-history").get_by_text("What time is it in Tokyo?").count() == 0
        response = page.request.get(f"{second.url}/project/thread/{thread_id}")
        assert response.status in (401, 403, 404), response.status
        assert "Asia/Tokyo" not in response.text()
        for method in ("put", "delete"):
            attempt = getattr(page.request, method)(
                f"{second.url}/project/thread", data={"threadId": thread_id, "name": "pwned"}
            )
            assert attempt.status in (401, 403, 404), (method, attempt.status)
        page.goto(f"{second.url}/thread/{thread_id}")
        page.wait_for_timeout(2_000)
        assert "Asia/Tokyo" not in page.content()
        bob.close()

        # Alice renames, then deletes, her conversation.
        alice = browser.new_context()
        page = alice.new_page()
        _login(page, second, "alice", "alice-password")
        renamed = page.request.put(f"{second.url}/project/thread", data={"threadId": thread_id, "name": "Clocks"})
        assert renamed.ok, renamed.status
        page.reload()
        page.locator("#thread-history").get_by_text("Clocks").wait_for(timeout=15_000)
        deleted = page.request.delete(f"{second.url}/project/thread", data={"threadId": thread_id})
        assert deleted.ok, deleted.status
        page.reload()
        page.locator("#chat-input").wait_for(timeout=30_000)
        page.wait_for_timeout(1_000)
        assert page.locator("#thread-history").get_by_text("Clocks").count() == 0
        alice.close()
    finally:
        second.stop()


def test_a_server_killed_mid_reply_keeps_the_question_and_the_partial_reply(
    browser: Any, tmp_path: Path, artifacts: Path, database: dict[str, str]
) -> None:
    workdir = tmp_path / "srv"
    workdir.mkdir(parents=True)
    slow = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0.15", **database})
    _add_user(slow, "carol", "carol-password")
    slow.start()
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, slow, "carol", "carol-password")
        _send(page, "What can you do?")
        page.get_by_text("Here is what this team can do", exact=False).first.wait_for(timeout=30_000)
        page.wait_for_timeout(2_000)  # more than one partial checkpoint interval
        thread_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        assert slow.proc is not None
        slow.proc.kill()  # SIGKILL: no clean shutdown, no flush
        slow.proc.wait(10)
        context.close()
    finally:
        slow.stop()

    # The team (chat profile) was stored with the first message, not only at a clean disconnect.
    cli = subprocess.run(
        [sys.executable, "-m", "chorus.cli", "export", thread_id, "--format", "json"],
        capture_output=True, text=True, env=slow.env, cwd=slow.workdir, timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["team"] == "Chorus"

    again = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0", **database}).start()
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, again, "carol", "carol-password")
        page.locator("#thread-history").get_by_text("What can you do?").click()
        page.get_by_text("Interrupted: the server stopped", exact=False).first.wait_for(timeout=30_000)
        page.get_by_text("Here is what this team can do", exact=False).first.wait_for(timeout=5_000)
        assert page.get_by_text("What can you do?").count() >= 1  # the user's message survived
        _send(page, "What time is it in Tokyo?")
        page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts / "history-after-kill.png"))
        context.close()
    finally:
        again.stop()


def test_an_attached_file_is_answered_from_and_kept_with_the_conversation(
    browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    workdir = tmp_path / "srv"
    workdir.mkdir(parents=True)
    first = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0"})
    _add_user(first, "dana", "dana-password")
    first.start()
    policy = tmp_path / "policy.md"
    policy.write_text("# Store policy\nShipping is free over 50 euros.\nRefunds take five days.\n", encoding="utf-8")
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, first, "dana", "dana-password")
        _attach(page, policy)
        _send(page, "How long do refunds take?")
        try:
            page.get_by_text("Refunds take five days.", exact=False).first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(artifacts / "attachment-answer.png"))
        context.close()
    finally:
        first.stop()

    again = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0"}).start()
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, again, "dana", "dana-password")
        page.locator("#thread-history").get_by_text("How long do refunds take?").click()
        page.get_by_text("Refunds take five days.", exact=False).first.wait_for(timeout=30_000)
        link = page.locator("a[href*='/chorus/files/']").first
        link.wait_for(timeout=15_000)
        href = link.get_attribute("href")
        assert href
        page.screenshot(path=str(artifacts / "attachment-resumed.png"))
        stored = page.request.get(href if href.startswith("http") else again.url + href)
        assert stored.ok and "Refunds take five days." in stored.text()
        assert stored.headers["x-content-type-options"] == "nosniff"
        forged = page.request.get((href if href.startswith("http") else again.url + href).replace("signature=",
                                                                                                    "signature=0"))
        assert forged.status == 404 and "Refunds" not in forged.text()
        context.close()
    finally:
        again.stop()

    # Removing the account removes its files from the data directory too.
    files = workdir / "data" / "files"
    assert any(p.name == "policy.md" for p in files.rglob("*"))
    removed = subprocess.run([sys.executable, "-m", "chorus.cli", "users", "remove", "dana"],
                             capture_output=True, text=True, env=again.env, cwd=workdir, timeout=120)
    assert removed.returncode == 0, removed.stderr
    assert not any(p.name == "policy.md" for p in files.rglob("*"))
