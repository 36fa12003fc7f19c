"""Per-user upload quotas: files and bytes per hour (shared by every worker, in the database)
and bytes of stored files in all, refused with a clear 429 before the body is stored."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from chat_client import ChatClient, login_cookie
from conftest import ChorusServer, fresh_postgres_database
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.store import make_engine, upgrade
from chorus.store.accounts import add_account
from chorus.store.db import run_with_engine
from chorus.store.files import LocalFileStore
from chorus.store.quota import MB, QuotaLimits, QuotaRefusal, QuotaStore, decide, folder_bytes

KB = 1024


# --- the rule -------------------------------------------------------------------------------

def test_each_refusal_names_its_limit_and_when_it_frees_up() -> None:
    now = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    limits = QuotaLimits(files_per_hour=3, bytes_per_hour=10 * MB, bytes_total=100 * MB)
    recent = [(now - timedelta(minutes=m), 3 * MB) for m in (50, 30, 10)]  # oldest first
    files = decide(limits, 1 * KB, recent, stored=0, now=now)
    assert files is not None and files.limit == "files_per_hour"
    assert files.retry_at == now + timedelta(minutes=10)  # the oldest of the three leaves the window
    assert "at most 3 files per hour" in files.message and "in 10 minutes (at 14:10 UTC)" in files.message

    two = recent[1:]
    assert decide(limits, 4 * MB, two, stored=0, now=now) is None  # 6 + 4 MB fits in 10
    size = decide(limits, 5 * MB, two, stored=0, now=now)
    assert size is not None and size.limit == "mb_per_hour" and size.retry_at == now + timedelta(minutes=30)
    assert "at most 10 MB of files per hour" in size.message and "this file is 5.0 MB" in size.message
    huge = decide(limits, 11 * MB, [], stored=0, now=now)
    assert huge is not None and huge.retry_at is None and "larger than the upload limit" in huge.message

    total = decide(limits, 2 * MB, [], stored=99 * MB, now=now)
    assert total is not None and total.limit == "mb_total" and total.retry_at is None
    assert "99.0 MB of your 100 MB" in total.message and "Delete conversations" in total.message
    assert decide(QuotaLimits(), 10**12, recent * 100, stored=10**12, now=now) is None  # 0 = no cap


def test_the_total_counts_the_users_files_not_the_turn_maps_chorus_drew(tmp_path: Path) -> None:
    files = LocalFileStore(tmp_path / "files", "s" * 40)
    folder = tmp_path / "files" / "user-1" / "el-1"
    folder.mkdir(parents=True)
    (folder / "upload.txt").write_bytes(b"u" * 3000)
    (folder / "map.svg").write_bytes(files.sign_drawing(b"<svg>" + b"x" * 2000 + b"</svg>"))
    assert folder_bytes(tmp_path / "files", files.signed_drawing) == 3000
    # A file that only looks like a drawing (forged or altered signature) is the user's and counts.
    forged = files.sign_drawing(b"<svg></svg>").replace(b"</svg>", b"<!-- more --></svg>")
    (folder / "forged.svg").write_bytes(forged)
    assert folder_bytes(tmp_path / "files", files.signed_drawing) == 3000 + len(forged)
    other = LocalFileStore(tmp_path / "files", "t" * 40)  # another installation's secret
    assert folder_bytes(tmp_path / "files", other.signed_drawing) == sum(
        p.stat().st_size for p in folder.iterdir())


# --- the store, as several workers share it -------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def quota_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'chorus.db'}"
        upgrade(url)
        yield url
        return
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url


async def test_two_workers_racing_never_go_over_the_hourly_caps(quota_db: str) -> None:
    workers = [make_engine(quota_db), make_engine(quota_db)]  # two processes' engines, one database
    try:
        limits = QuotaLimits(files_per_hour=5, bytes_per_hour=1 * MB)
        stores = [QuotaStore(engine, limits) for engine in workers]
        outcomes = await asyncio.gather(*(stores[i % 2].reserve("user:alice", 10 * KB) for i in range(16)))
        taken = [o for o in outcomes if isinstance(o, int)]
        refused = [o for o in outcomes if isinstance(o, QuotaRefusal)]
        assert len(taken) == 5 and len(refused) == 11
        assert {r.limit for r in refused} == {"files_per_hour"}
        assert isinstance(await stores[1].reserve("user:bob", 10 * KB), int)  # per user

        await stores[0].release(taken[0])  # an upload that was not stored gives its place back
        again = await stores[1].reserve("user:alice", 10 * KB)
        assert isinstance(again, int)
        assert isinstance(await stores[0].reserve("user:alice", 10 * KB), QuotaRefusal)

        bytes_only = [QuotaStore(engine, QuotaLimits(bytes_per_hour=100 * KB)) for engine in workers]
        outcomes = await asyncio.gather(*(bytes_only[i % 2].reserve("user:carol", 30 * KB) for i in range(8)))
        assert sum(isinstance(o, int) for o in outcomes) == 3  # 3 x 30 KB fit in 100 KB, a fourth does not
        assert {o.limit for o in outcomes if isinstance(o, QuotaRefusal)} == {"mb_per_hour"}
    finally:
        for engine in workers:
            await engine.dispose()


# --- over HTTP, against a real server --------------------------------------------------------

PASSWORD = "quota-password"


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusServer]:
    workdir = tmp_path_factory.mktemp("quota")
    srv = ChorusServer(workdir, env={
        "CHORUS_OFFLINE_TOKEN_DELAY": "0",
        "CHORUS_UPLOAD_FILES_PER_HOUR": "3",
        "CHORUS_UPLOAD_MB_PER_HOUR": "0.06",  # 61 KB
        "CHORUS_UPLOAD_MB_TOTAL": "0.04",  # 41 KB
    })
    add_accounts(workdir / "data", "alice", "bob", "carol")
    srv.start()
    yield srv
    srv.stop()


def add_accounts(home: Path, *names: str) -> None:
    """Password accounts in the SQLite database of the data directory ``home`` (as `chorus users add`)."""
    home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite+aiosqlite:///{home.resolve() / 'chorus.db'}"
    upgrade(url)

    async def add(engine: AsyncEngine) -> None:
        for name in names:
            await add_account(engine, name, PASSWORD)

    run_with_engine(url, add)


async def _client(srv: ChorusServer, name: str) -> ChatClient:
    return await ChatClient(srv, cookie=login_cookie(srv.url, name, PASSWORD)).connect()


async def test_uploads_over_a_users_hourly_quota_are_refused_with_when(quota_server: ChorusServer) -> None:
    alice = await _client(quota_server, "alice")
    bob = await _client(quota_server, "bob")
    try:
        for i in range(3):
            assert (await alice.upload(f"n{i}.txt", b"note\n" * 100, "text/plain")).status_code == 200
        refused = await alice.upload("n3.txt", b"note\n" * 100, "text/plain")
        assert refused.status_code == 429
        body = refused.json()
        assert body["limit"] == "files_per_hour"
        assert "at most 3 files per hour" in body["detail"] and "You can upload again in 60 minutes" in body["detail"]
        retry = int(refused.headers["retry-after"])
        assert 3500 < retry <= 3600 and body["retry_after"] == retry

        # Bob has a quota of his own. Uploads Chainlit does not store (no such session) count nothing:
        # after two of those he is refused for bytes, not for a fourth file.
        async with httpx.AsyncClient(timeout=30) as http:
            for _ in range(2):
                lost = await http.post(f"{quota_server.url}/project/file", params={"session_id": "no-such-session"},
                                       files={"file": ("x.txt", b"x" * KB, "text/plain")},
                                       headers={"Cookie": bob.cookie or ""})
                assert lost.status_code == 404
        assert (await bob.upload("a.txt", b"a" * 32 * KB, "text/plain")).status_code == 200
        too_much = await bob.upload("b.txt", b"b" * 32 * KB, "text/plain")
        assert too_much.status_code == 429 and too_much.json()["limit"] == "mb_per_hour"
        assert "at most 0.06 MB of files per hour" in too_much.json()["detail"]
        assert (await bob.upload("c.txt", b"c" * KB, "text/plain")).status_code == 200  # a small one still fits

        # No login: Chainlit refuses it, and nobody's quota is touched.
        async with httpx.AsyncClient(timeout=30) as http:
            anonymous = await http.post(f"{quota_server.url}/project/file", params={"session_id": alice.session_id},
                                        files={"file": ("x.txt", b"x", "text/plain")})
        assert anonymous.status_code == 401
    finally:
        await alice.sio.disconnect()
        await bob.sio.disconnect()


async def test_the_total_counts_stored_files_and_frees_up_when_they_are_deleted(quota_server: ChorusServer) -> None:
    carol = await _client(quota_server, "carol")
    try:
        stored = await carol.upload("policy.txt", b"Refunds take five days.\n" * 1280, "text/plain")  # 30 KB
        assert stored.status_code == 200, stored.text
        await carol.send("what does the file say?", files=[stored.json()["id"]])
        await carol.wait_for(lambda m: m.get("type") == "assistant_message")
        drawn = quota_server.workdir / "data" / "files"
        for _ in range(100):  # the turn's map is stored too: it is Chorus's drawing and does not count
            if any(p.read_bytes().startswith(b"<!--chorus-drawing") for p in drawn.rglob("*.svg")):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the turn map was never stored")
        refused: httpx.Response | None = None
        for _ in range(50):  # the file is stored with the message
            refused = await carol.upload("more.txt", b"m" * 20 * KB, "text/plain")
            if refused.status_code == 429:
                break
            await asyncio.sleep(0.2)
        assert refused is not None and refused.status_code == 429, refused.text if refused else None
        assert refused.json()["limit"] == "mb_total" and "retry-after" not in refused.headers
        assert "your stored files take 30 KB of your 0.04 MB" in refused.json()["detail"]

        async with httpx.AsyncClient(timeout=30) as http:
            deleted = await http.request("DELETE", f"{quota_server.url}/project/thread",
                                         json={"threadId": carol.thread_id}, headers={"Cookie": carol.cookie or ""})
        assert deleted.status_code == 200, deleted.text
        assert (await carol.upload("more.txt", b"m" * 20 * KB, "text/plain")).status_code == 200
    finally:
        await carol.sio.disconnect()
