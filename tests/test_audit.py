"""The audit log, on SQLite and PostgreSQL: what operators and users do is recorded (who, what,
when, from where) by a real server and the CLI, `chorus audit` reads it back, and the table
refuses every UPDATE and DELETE, whoever sends them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import ChorusServer, fresh_postgres_database

from chorus.store import audit, upgrade
from chorus.store.db import run_with_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'chorus.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


def _sync(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg"))


def test_the_log_cannot_be_changed_or_emptied(database: str) -> None:
    upgrade(database)

    async def write(engine: Any) -> None:
        with audit.acting("alice", "192.0.2.7"):
            await audit.record(engine, "login", "alice", {"method": "password"})

    run_with_engine(database, write)
    engine = _sync(database)
    try:
        for statement in ("UPDATE chorus_audit SET actor = 'mallory'", "DELETE FROM chorus_audit",
                          "UPDATE chorus_audit SET detail = '{}' WHERE action = 'login'"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(statement))
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT actor, action, target, address FROM chorus_audit")).all()
        assert [tuple(r) for r in rows] == [("alice", "login", "alice", "192.0.2.7")]
    finally:
        engine.dispose()


def _cli(srv: ChorusServer, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "chorus.cli", *args], env=srv.env, cwd=srv.workdir, input=stdin,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_what_users_and_operators_do_is_recorded_and_read_back(database: str, tmp_path: Path) -> None:
    srv = ChorusServer(tmp_path / "w", env={"CHORUS_DATABASE_URL": database, "CHORUS_MEMORY": "false"})
    srv.workdir.mkdir(parents=True)
    _cli(srv, "users", "add", "alice", "--password-stdin", stdin="alice-password-1\n")
    _cli(srv, "users", "add", "bob", "--password-stdin", stdin="bob-password-12\n")
    key = _cli(srv, "keys", "create", "--user", "alice").stdout.strip()
    _cli(srv, "keys", "revoke", key[:14])
    srv.start()
    try:
        wrong = httpx.post(srv.url + "/login", data={"username": "alice", "password": "guess"}, timeout=30)
        assert wrong.status_code == 401
        # A password typed into the name field is not kept: only an account's name is.
        typo = httpx.post(srv.url + "/login", data={"username": "Hunter2-secret", "password": "x"}, timeout=30)
        assert typo.status_code == 401
        right = httpx.post(srv.url + "/login", data={"username": "bob", "password": "bob-password-12"}, timeout=30)
        assert right.status_code == 200
        out = httpx.post(srv.url + "/logout", cookies=right.cookies, timeout=30)
        assert out.status_code == 200
    finally:
        srv.stop()
    _cli(srv, "users", "remove", "bob")

    entries = json.loads(_cli(srv, "audit", "--json").stdout)
    seen = [(e["action"], e["target"]) for e in reversed(entries)]  # oldest first
    assert seen == [("account_added", "alice"), ("account_added", "bob"), ("key_created", "alice"),
                    ("key_revoked", "alice"), ("login_failed", "alice"), ("login_failed", ""), ("login", "bob"),
                    ("logout", ""),
                    ("account_removed", "bob")], seen
    by_action = {e["action"]: e for e in entries}
    assert by_action["account_added"]["actor"].startswith("cli:")
    assert by_action["login"]["actor"] == "bob" and by_action["login"]["address"] == "127.0.0.1"
    assert by_action["login_failed"]["address"] == "127.0.0.1" and by_action["login_failed"]["actor"] == "anonymous"
    assert "Hunter2-secret" not in json.dumps(entries)
    assert by_action["logout"]["actor"] == "bob"
    assert by_action["key_created"]["detail"]["prefix"] == key[:14] and key not in json.dumps(entries)
    # Filters: by user (as actor or target), by action, by time.
    bobs = json.loads(_cli(srv, "audit", "--user", "bob", "--json").stdout)
    assert {e["action"] for e in bobs} == {"account_added", "login", "logout", "account_removed"}
    assert [e["action"] for e in json.loads(_cli(srv, "audit", "--action", "login_failed", "--json").stdout)] == [
        "login_failed", "login_failed"]
    assert json.loads(_cli(srv, "audit", "--since", "2999-01-01", "--json").stdout) == []
    assert len(json.loads(_cli(srv, "audit", "--since", "1h", "--json").stdout)) == len(entries)
    text = _cli(srv, "audit").stdout
    assert "login_failed  alice" in text and "from 127.0.0.1" in text
    bad = subprocess.run([sys.executable, "-m", "chorus.cli", "audit", "--action", "nothing"], env=srv.env,
                         cwd=srv.workdir, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown action" in bad.stderr


def test_a_deleted_and_an_exported_conversation_are_recorded(tmp_path: Path) -> None:
    srv = ChorusServer(tmp_path / "w", env={"CHORUS_MEMORY": "false"})
    srv.workdir.mkdir(parents=True)
    _cli(srv, "users", "add", "carol", "--password-stdin", stdin="carol-password-1\n")
    url = f"sqlite+aiosqlite:///{srv.workdir / 'data' / 'chorus.db'}"

    async def conversation(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text('INSERT INTO users ("id", "identifier", "createdAt", "metadata") '
                                       "VALUES ('u1', 'carol', '2026-12-01T00:00:00Z', '{}')"))
            await conn.execute(sa.text('INSERT INTO threads ("id", "createdAt", "name", "userId", "userIdentifier") '
                                       "VALUES ('t1', '2026-12-01T00:00:00Z', 'Hello', 'u1', 'carol')"))

    run_with_engine(url, conversation)
    _cli(srv, "export", "t1", "--format", "json")
    srv.start()
    try:
        cookie = httpx.post(srv.url + "/login", data={"username": "carol", "password": "carol-password-1"},
                            timeout=30).cookies
        gone = httpx.request("DELETE", srv.url + "/project/thread", json={"threadId": "t1"}, cookies=cookie,
                             timeout=30)
        assert gone.status_code == 200, gone.text
    finally:
        srv.stop()
    entries = json.loads(_cli(srv, "audit", "--json").stdout)
    exported = next(e for e in entries if e["action"] == "conversation_exported")
    deleted = next(e for e in entries if e["action"] == "conversation_deleted")
    assert exported["target"] == "t1" and exported["actor"].startswith("cli:")
    assert deleted["target"] == "t1" and deleted["actor"] == "carol" and deleted["detail"]["owner"] == "carol"
    assert deleted["address"] == "127.0.0.1"
