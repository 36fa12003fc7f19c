"""The sidebar's search, through Chainlit's own route against a real server, on SQLite and
PostgreSQL: a user finds their conversations by words in their messages, the team's replies or
the name, case aside, every word counted, ``%`` and ``_`` taken literally; never another user's."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import ChorusServer, fresh_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    with fresh_postgres_database() as url:
        yield url


def _sync(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg"))


def test_search_finds_a_users_own_conversations_by_their_words(database: str | None, tmp_path: Path) -> None:
    env = {"CHORUS_MEMORY": "false", **({"CHORUS_DATABASE_URL": database} if database else {})}
    srv = ChorusServer(tmp_path / "w", env=env)
    srv.workdir.mkdir(parents=True)
    for name in ("alice", "bob"):
        subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", name, "--password-stdin"],
                       input=f"{name}-password-1\n", text=True, env=srv.env, cwd=srv.workdir, check=True, timeout=120)
    srv.start()
    url = database or f"sqlite+aiosqlite:///{srv.workdir / 'data' / 'chorus.db'}"
    try:
        cookies = {name: httpx.post(srv.url + "/login", data={"username": name, "password": f"{name}-password-1"},
                                    timeout=30).cookies for name in ("alice", "bob")}
        engine = _sync(url)
        with engine.begin() as conn:
            ids = {r[1]: r[0] for r in conn.execute(sa.text('SELECT "id", "identifier" FROM users'))}
            conversations = [
                ("t1", "alice", "Rock albums", [("user_message", "Which albums does Led Zeppelin have?"),
                                                ("assistant_message", "Led Zeppelin has 14 albums.")]),
                ("t2", "alice", "Invoices", [("user_message", "Is my invoice paid?"),
                                             ("assistant_message", "Your invoice is 100% paid, in full_time.")]),
                ("t3", "alice", "An empty one", [("user_message", "")]),
                ("t4", "bob", "Tickets", [("user_message", "Any Led Zeppelin tickets? My invoice is 100% paid.")]),
            ]
            for n, (thread, owner, name, steps) in enumerate(conversations):
                conn.execute(sa.text('INSERT INTO threads ("id", "createdAt", "name", "userId", "userIdentifier") '
                                     "VALUES (:id, :at, :name, :uid, :owner)"),
                             {"id": thread, "at": f"2026-12-0{n + 1}T10:00:00Z", "name": name, "uid": ids[owner],
                              "owner": owner})
                for m, (kind, output) in enumerate(steps):
                    conn.execute(sa.text(
                        'INSERT INTO steps ("id", "name", "type", "threadId", "output", "createdAt", "start", "end", '
                        '"streaming", "waitForAnswer", "isError") '
                        "VALUES (:id, :name, :type, :thread, :output, :at, :at, :at, false, false, false)"),
                        {"id": f"{thread}-{m}", "name": owner if kind == "user_message" else "catalog", "type": kind,
                         "thread": thread, "output": output, "at": f"2026-12-0{n + 1}T10:00:0{m}Z"})
        engine.dispose()

        def search(who: str, words: str) -> list[str]:
            answer = httpx.post(srv.url + "/project/threads", cookies=cookies[who], timeout=30,
                                json={"pagination": {"first": 20, "cursor": None}, "filter": {"search": words}})
            assert answer.status_code == 200, answer.text
            return [t["id"] for t in answer.json()["data"]]

        assert search("alice", "zeppelin") == ["t1"]  # her question and the reply; not bob's
        assert search("alice", "LED zep") == ["t1"]  # case aside, every word
        assert search("alice", "invoice paid") == ["t2"]
        assert search("alice", "zeppelin invoice") == []  # both words, one conversation
        assert search("alice", "100%") == ["t2"]  # % is a character, not a wildcard
        assert search("alice", "l_d") == []  # and so is _
        assert search("alice", "full_time") == ["t2"]
        assert search("alice", "rock") == ["t1"]  # the conversation's name
        assert search("bob", "zeppelin") == ["t4"]
        assert search("bob", "rock") == []
        assert sorted(search("alice", "")) == ["t1", "t2", "t3"]  # no search: all of hers
    finally:
        srv.stop()
