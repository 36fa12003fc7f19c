"""What Chorus stores (password hashes, conversations, traces, uploads) is readable by the user
that runs it only: a new data directory is made private, an existing loose one is tightened."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from chat_client import ChatClient, login_cookie
from conftest import ChorusServer
from test_quota import PASSWORD, add_accounts

POLICY = b"Refunds take five days.\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def loose(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that its group or others may use."""
    found = [] if not mode(root) & 0o077 else [f"{root} {mode(root):o}"]
    for parent, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(parent, name)
            if not path.is_symlink() and mode(path) & 0o077:
                found.append(f"{path} {mode(path):o}")
    return found


async def wait_for_file(path: Path, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.2)):
        if path.exists():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} was never created")


async def upload_and_ask(client: ChatClient) -> str:
    """Attach a file to a message, as the page does; the uploaded file's id."""
    uploaded = await client.upload("policy.txt", POLICY, "text/plain")
    assert uploaded.status_code == 200, uploaded.text
    await client.send("how long do refunds take?", files=[uploaded.json()["id"]])
    await client.wait_for(lambda m: m.get("type") == "assistant_message")
    return str(uploaded.json()["id"])


async def test_a_new_data_directory_and_everything_in_it_is_private(tmp_path: Path) -> None:
    srv = ChorusServer(tmp_path, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0", "CHORUS_TRACING": "true"})
    home = tmp_path / "data"
    assert not home.exists()
    srv.start()
    client = await ChatClient(srv).connect()
    try:
        file_id = await upload_and_ask(client)
        session_files = tmp_path / ".files" / client.session_id
        [copy] = session_files.glob(file_id + "*")  # Chainlit's copy of the upload
        assert copy.read_bytes() == POLICY
        assert mode(tmp_path / ".files") == 0o700 and mode(session_files) == 0o700 and mode(copy) == 0o600
        await wait_for_file(home / "mlflow.db")  # traces are set up in the background
    finally:
        await client.sio.disconnect()
        srv.stop()
    assert mode(home) == 0o700
    assert mode(home / "chorus.db") == 0o600 and mode(home / "mlflow.db") == 0o600
    assert (home / "chroma").is_dir()
    assert loose(home) == []
    assert "readable by other users" not in srv.output()  # nothing needed tightening


async def test_an_existing_loose_data_directory_is_tightened_at_start(tmp_path: Path) -> None:
    srv = ChorusServer(tmp_path, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0"})
    home = tmp_path / "data"
    add_accounts(home, "alice")  # what `chorus users add` leaves under a umask of 022
    old = home / "notes" / "old.txt"
    old.parent.mkdir()
    old.write_text("from an earlier version")
    stale = tmp_path / ".files" / "crashed-session" / "upload"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(POLICY)
    for path, loose_mode in ((home, 0o755), (home / "chorus.db", 0o644), (old.parent, 0o755), (old, 0o666),
                             (tmp_path / ".files", 0o755), (stale.parent, 0o755), (stale, 0o644)):
        path.chmod(loose_mode)
    srv.start()
    client = await ChatClient(srv, cookie=login_cookie(srv.url, "alice", PASSWORD)).connect()
    try:
        await upload_and_ask(client)
        for _ in range(50):  # the file is stored with the message, under files/<user id>/<element id>/
            stored = list((home / "files").rglob("policy.txt")) if (home / "files").exists() else []
            if stored:
                break
            await asyncio.sleep(0.2)
        assert len(stored) == 1 and stored[0].read_bytes() == POLICY
        assert mode(stored[0]) == 0o600
        assert mode(home / "files") == mode(stored[0].parent) == mode(stored[0].parent.parent) == 0o700
        assert loose(tmp_path / ".files") == []
    finally:
        await client.sio.disconnect()
        srv.stop()
    assert mode(home) == 0o700 and mode(home / "chorus.db") == 0o600 and mode(old) == 0o600
    assert loose(home) == []
    output = srv.output()
    assert output.count(f"{home.resolve()} was readable by other users") == 1  # said once, at start
