"""A second user holding the first user's ids can change nothing of theirs.

Alice chats with a file attached and gives her reply a thumbs up. Bob, logged in with his own
account and his own chat, then replays Chainlit's routes and socket events with Alice's
thread, step, element and feedback ids. Each attempt is refused, and Alice's conversation,
file and feedback are exactly as she left them. Run against SQLite and PostgreSQL.

The last test lists every HTTP route and socket event of the app: a new one fails it until it
is classified here, with the test that attacks it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from chat_client import ChatClient, login_cookie
from conftest import ChorusServer, fresh_postgres_database


@dataclass
class World:
    srv: ChorusServer
    db_url: str  # a synchronous SQLAlchemy URL of the server's database
    alice: str  # cookies
    bob: str
    thread: str  # Alice's
    question: str  # her message's step id
    reply: str  # the assistant's reply step id
    element: str  # her attachment
    file: Path  # its stored copy
    feedback: str  # her thumbs up

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
        finally:
            engine.dispose()

    def alice_intact(self) -> None:
        """Alice's conversation is as she left it: her steps in her thread, her file, her feedback."""
        steps = self.rows('SELECT "id", "threadId" FROM steps WHERE "id" IN (:q, :r)', q=self.question, r=self.reply)
        assert {s["id"]: s["threadId"] for s in steps} == {self.question: self.thread, self.reply: self.thread}
        elements = self.rows('SELECT "id", "threadId", "type" FROM elements WHERE "threadId" = :t AND "type" = :k',
                             t=self.thread, k="file")  # (the turn map is an image of the turn's own)
        assert [(e["id"], e["type"]) for e in elements] == [(self.element, "file")]
        assert self.file.read_bytes() == REFUND_POLICY
        feedback = self.rows('SELECT "forId", "value" FROM feedbacks WHERE "id" = :id', id=self.feedback)
        assert feedback == [{"forId": self.reply, "value": 1}]
        owner = self.rows('SELECT "userIdentifier" FROM threads WHERE "id" = :t', t=self.thread)
        assert owner == [{"userIdentifier": "alice"}]


REFUND_POLICY = b"Refunds are paid within 14 days of a return.\n"


def _add_users(srv: ChorusServer, *names: str) -> None:
    for name in names:
        subprocess.run([sys.executable, "-m", "chorus.cli", "users", "add", name, "--password-stdin"],
                       input=f"{name}-password\n", text=True, env=srv.env, cwd=srv.workdir, check=True, timeout=120)


async def _alice_chats(srv: ChorusServer, cookie: str) -> tuple[ChatClient, str, str, str]:
    """Alice asks with a file attached; (her client, her question's id, the reply's id, the element id)."""
    alice = await ChatClient(srv, cookie=cookie).connect()
    uploaded = await alice.upload("policy.txt", REFUND_POLICY, "text/plain")
    assert uploaded.status_code == 200, uploaded.text
    element = uploaded.json()["id"]
    question = await alice.send("How long do refunds take?", files=[element])
    reply = await alice.wait_for(
        lambda m: m.get("type") == "assistant_message" and "14 days" in (m.get("output") or ""))
    await asyncio.sleep(1.5)  # Chainlit stores the steps and the element in the background
    return alice, question, str(reply["id"]), str(element)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with _database(request.param) as (env, db_url):
        workdir = tmp_path_factory.mktemp(f"ownership-{request.param}")
        srv = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0", "CHORUS_MEMORY": "false", **env})
        _add_users(srv, "alice", "bob")
        srv.start()
        try:
            alice_cookie = login_cookie(srv.url, "alice", "alice-password")
            bob_cookie = login_cookie(srv.url, "bob", "bob-password")

            async def setup() -> World:
                alice, question, reply, element = await _alice_chats(srv, alice_cookie)
                async with httpx.AsyncClient(base_url=srv.url, headers={"Cookie": alice_cookie}) as http:
                    given = await http.put("/feedback", json={
                        "feedback": {"forId": reply, "value": 1, "threadId": alice.thread_id},
                        "sessionId": alice.session_id})
                assert given.status_code == 200, given.text
                await alice.sio.disconnect()
                files = list((workdir / "data" / "files").rglob("policy.txt"))
                assert len(files) == 1, files
                return World(srv, db_url or f"sqlite:///{workdir / 'data' / 'chorus.db'}", alice_cookie, bob_cookie,
                             alice.thread_id, question, reply, element, files[0], given.json()["feedbackId"])

            yield asyncio.run(setup())
        finally:
            srv.stop()


class _database:
    """The server's database: SQLite in its data directory, or a fresh PostgreSQL database."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._pg: Any = None

    def __enter__(self) -> tuple[dict[str, str], str | None]:
        if self.kind == "sqlite":
            return {}, None
        self._pg = fresh_postgres_database()
        url = self._pg.__enter__()
        return {"CHORUS_DATABASE_URL": url}, url.replace("+asyncpg", "+psycopg")

    def __exit__(self, *exc: object) -> None:
        if self._pg is not None:
            self._pg.__exit__(*exc)


async def _bob(world: World) -> ChatClient:
    """Bob with a chat of his own (and a first message, so his thread exists)."""
    bob = await ChatClient(world.srv, cookie=world.bob).connect()
    await bob.answer_to("What is 2 + 2?", "2 + 2 = 4")
    return bob


def _element(world: World, element_id: str, thread_id: str) -> dict[str, Any]:
    return {"id": element_id, "type": "custom", "threadId": thread_id, "forId": world.question,
            "name": "policy.txt", "display": "inline", "props": {"text": "overwritten by bob"}}


async def test_another_users_attachment_cannot_be_deleted(world: World) -> None:
    bob = await _bob(world)
    try:
        async with httpx.AsyncClient(base_url=world.srv.url, headers={"Cookie": world.bob}) as http:
            for thread in (bob.thread_id, world.thread):
                answer = await http.request("DELETE", "/project/element", json={
                    "element": _element(world, world.element, thread), "sessionId": bob.session_id})
                assert answer.status_code == 403, answer.text
        await asyncio.sleep(0.5)
        world.alice_intact()
    finally:
        await bob.sio.disconnect()


async def test_another_users_attachment_cannot_be_overwritten_or_added_to(world: World) -> None:
    bob = await _bob(world)
    try:
        async with httpx.AsyncClient(base_url=world.srv.url, headers={"Cookie": world.bob}) as http:
            for element_id in (world.element, str(uuid.uuid4())):
                await http.put("/project/element", json={
                    "element": _element(world, element_id, world.thread), "sessionId": bob.session_id})
        await asyncio.sleep(1.0)  # Chainlit writes elements from a background task
        world.alice_intact()
        assert "not yours" in world.srv.output().lower()  # the data layer refused them
    finally:
        await bob.sio.disconnect()


async def test_feedback_on_another_users_reply_cannot_be_written_or_deleted(world: World) -> None:
    bob = await _bob(world)
    try:
        async with httpx.AsyncClient(base_url=world.srv.url, headers={"Cookie": world.bob}) as http:
            for feedback in ({"forId": world.reply, "value": 0, "threadId": bob.thread_id},
                             {"forId": world.reply, "value": 0, "threadId": world.thread, "id": world.feedback},
                             {"forId": bob.thread_id, "value": 0, "id": world.feedback}):
                answer = await http.put("/feedback", json={"feedback": feedback, "sessionId": bob.session_id})
                assert answer.status_code == 403, answer.text
            answer = await http.request("DELETE", "/feedback", json={"feedbackId": world.feedback})
            assert answer.status_code == 403, answer.text
        world.alice_intact()
    finally:
        await bob.sio.disconnect()


async def test_a_message_with_another_users_step_id_does_not_move_it(world: World) -> None:
    bob = await _bob(world)
    try:
        bob.messages.clear()
        await bob.send("Show my invoices", step_id=world.question)
        refusal = await bob.wait_for(lambda m: m.get("isError") and "another conversation" in (m.get("output") or ""))
        assert refusal
        await bob.send("hello", step_id=world.reply, event="edit_message")
        await asyncio.sleep(1.0)
        world.alice_intact()
        assert (await bob.answer_to("What is 3 + 4?", "3 + 4 = 7"))["name"] == "mathematician"  # still serving
    finally:
        await bob.sio.disconnect()


async def test_another_users_thread_cannot_be_renamed_or_deleted(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.srv.url, headers={"Cookie": world.bob}) as http:
        renamed = await http.put("/project/thread", json={"threadId": world.thread, "name": "bob was here"})
        deleted = await http.request("DELETE", "/project/thread", json={"threadId": world.thread})
        read = await http.get(f"/project/thread/{world.thread}")
        shared = await http.put("/project/thread/share", json={"threadId": world.thread, "isShared": True})
    assert {renamed.status_code, deleted.status_code, read.status_code, shared.status_code} <= {401, 403, 404}
    world.alice_intact()
    assert world.rows('SELECT "name" FROM threads WHERE "id" = :t', t=world.thread)[0]["name"] != "bob was here"


async def test_another_users_approval_request_cannot_be_answered(world: World) -> None:
    """Bob holds Alice's approval request id (an order waiting in her conversation) and posts it as
    an action: from his own chat it is not found, into her session Chainlit refuses him; it stays
    pending until Alice answers it herself."""
    alice = ChatClient(world.srv, cookie=world.alice)
    alice.chat_profile = "Music store"
    await alice.connect()
    await alice.answer_to("My email is ana.souza@example.com", "verified as customer 1")
    await alice.send("Buy the song Black Dog")
    asked = await alice.wait_for(lambda m: bool((m.get("metadata") or {}).get("approval")), timeout=30)
    approval = asked["metadata"]["approval"]

    def action(name: str, session: str) -> dict[str, Any]:
        return {"sessionId": session, "action": {"name": name, "payload": {"id": approval}, "label": "Approve",
                                                 "id": f"{approval}-approve", "forId": asked["id"]}}

    bob = await _bob(world)
    async with httpx.AsyncClient(base_url=world.srv.url, headers={"Cookie": world.bob}, timeout=30) as http:
        mine = await http.post("/project/action", json=action("chorus_approve", bob.session_id))
        assert mine.status_code == 200, mine.text
        await bob.wait_for(lambda m: "no such approval request" in (m.get("output") or ""))
        theirs = await http.post("/project/action", json=action("chorus_approve", alice.session_id))
        assert theirs.status_code == 401, theirs.text
    assert world.rows("SELECT status FROM chorus_approvals WHERE id = :id", id=approval) == [{"status": "pending"}]
    async with httpx.AsyncClient(base_url=world.srv.url, headers={"Cookie": world.alice}, timeout=30) as http:
        denied = await http.post("/project/action", json=action("chorus_deny", alice.session_id))
        assert denied.status_code == 200, denied.text
    await alice.wait_for(lambda m: "Not run: the user denied order_track" in (m.get("output") or ""), timeout=30)
    assert world.rows("SELECT status FROM chorus_approvals WHERE id = :id", id=approval) == [{"status": "denied"}]
    await alice.sio.disconnect()
    await bob.sio.disconnect()


async def test_the_owner_still_can(world: World) -> None:
    """The checks refuse others, not the owner: Alice changes her own feedback."""
    async with httpx.AsyncClient(base_url=world.srv.url, headers={"Cookie": world.alice}) as http:
        changed = await http.put("/feedback", json={
            "feedback": {"forId": world.reply, "value": 0, "id": world.feedback}, "sessionId": str(uuid.uuid4())})
        assert changed.status_code == 200, changed.text
        assert world.rows('SELECT "value" FROM feedbacks WHERE "id" = :id', id=world.feedback) == [{"value": 0}]
        restored = await http.put("/feedback", json={
            "feedback": {"forId": world.reply, "value": 1, "id": world.feedback}, "sessionId": str(uuid.uuid4())})
        assert restored.status_code == 200, restored.text
    world.alice_intact()


# Every HTTP route and socket event of the app, and why a second user gains nothing by it.
# "owner" routes write through the data layer, whose ownership checks the named test attacks.
ROUTES: dict[tuple[str, str], str] = {
    ("DELETE", "/project/element"): "owner:test_another_users_attachment_cannot_be_deleted",
    ("PUT", "/project/element"): "owner:test_another_users_attachment_cannot_be_overwritten_or_added_to",
    ("PUT", "/feedback"): "owner:test_feedback_on_another_users_reply_cannot_be_written_or_deleted",
    ("DELETE", "/feedback"): "owner:test_feedback_on_another_users_reply_cannot_be_written_or_deleted",
    ("PUT", "/project/thread"): "owner:test_another_users_thread_cannot_be_renamed_or_deleted",
    ("DELETE", "/project/thread"): "owner:test_another_users_thread_cannot_be_renamed_or_deleted",
    ("PUT", "/project/thread/share"): "owner:test_another_users_thread_cannot_be_renamed_or_deleted",
    ("GET", "/project/thread/{thread_id}"): "owner:test_another_users_thread_cannot_be_renamed_or_deleted",
    ("GET", "/project/share/{thread_id}"): "read: only threads their owner shared (sharing is off)",
    ("GET", "/project/thread/{thread_id}/element/{element_id}"): "read: Chainlit checks the thread's author",
    ("POST", "/project/threads"): "read: Chainlit lists the caller's own threads only",
    ("POST", "/project/action"): "session: Chainlit checks the session is the caller's; an approval is answered "
                                 "only for the caller's own request in that conversation (test_another_users_"
                                 "approval_request_cannot_be_answered)",
    ("POST", "/project/file"): "session: an upload into the caller's own session (quota and size checked)",
    ("GET", "/project/file/{file_id}"): "session: a file of the caller's own session",
    ("POST", "/login"): "login", ("POST", "/logout"): "login", ("POST", "/auth/jwt"): "login (widget tokens)",
    ("POST", "/auth/header"): "login", ("GET", "/auth/oauth/{provider_id}"): "login",
    ("GET", "/auth/oauth/{provider_id}/callback"): "login", ("POST", "/auth/oauth/azure-ad-hybrid/callback"): "login",
    ("GET", "/auth/config"): "public", ("GET", "/user"): "the caller's own user",
    ("POST", "/set-session-cookie"): "the caller's own browser cookie",
    ("GET", "/project/translations"): "public", ("GET", "/project/settings"): "public",
    ("POST", "/mcp"): "session: MCP connections of the caller's own session (no MCP servers configured)",
    ("DELETE", "/mcp"): "session: MCP connections of the caller's own session",
    ("GET", "/public/{filename:path}"): "public", ("GET", "/assets/{filename:path}"): "public",
    ("GET", "/copilot/{filename:path}"): "public", ("GET", "/favicon"): "public", ("GET", "/logo"): "public",
    ("GET", "/avatars/{avatar_id:str}"): "public", ("HEAD", "/"): "public", ("GET", "/health"): "public",
    ("GET", "/{full_path:path}"): "public (the page)",
    ("GET", "/chorus/static/{name}"): "public", ("GET", "/chorus/status"): "public (which teams are offline)",
    ("GET", "/chorus/trace/{turn_id}"): "read: a redirect to the operator's MLflow UI, which is loopback-only",
    ("GET", "/chorus/files/{key:path}"): "read: an HMAC-signed, expiring link to one file",
    ("GET", "/docs"): "public (API docs)", ("GET", "/openapi.json"): "public (API docs)",
    ("GET", "/docs/oauth2-redirect"): "public", ("GET", "/redoc"): "public",
    ("GET", "/metrics"): "operator: loopback or CHORUS_METRICS_TOKEN only; counts, no user data (tests/test_ops.py)",
    ("GET", "/healthz"): "public (no data)", ("GET", "/readyz"): "public (states of services, no user data)",
    ("GET", "/v1/models"): "key: the teams the caller's own key may use (tests/test_api.py::"
                           "test_models_are_the_teams_a_key_may_use)",
    ("POST", "/api/runs"): "key: a run of the key's user; another user's thread id gets 404 (tests/test_runs.py::"
                           "test_a_second_user_with_the_first_users_run_gets_nothing)",
    ("GET", "/api/runs"): "key: the key's user's runs only (tests/test_runs.py::"
                          "test_a_second_user_with_the_first_users_run_gets_nothing)",
    ("GET", "/api/runs/{run_id}"): "key: 404 for another user's run (tests/test_runs.py::"
                                   "test_a_second_user_with_the_first_users_run_gets_nothing)",
    ("GET", "/api/runs/{run_id}/events"): "key: 404 for another user's run (tests/test_runs.py::"
                                          "test_a_second_user_with_the_first_users_run_gets_nothing)",
    ("POST", "/api/runs/{run_id}/cancel"): "key: 404 for another user's run, which goes on (tests/test_runs.py::"
                                           "test_a_second_user_with_the_first_users_run_gets_nothing)",
    ("GET", "/api/runs/{run_id}/approvals"): "key: 404 for another user's run (tests/test_runs.py::test_a_run_"
                                             "waits_for_an_approval_given_through_the_api_and_only_its_user_may_give_it)",
    ("POST", "/api/runs/{run_id}/approvals/{approval_id}"): "key: 404 for another user's run or request; it stays "
                                                            "pending (tests/test_runs.py::test_a_run_waits_for_an_"
                                                            "approval_given_through_the_api_and_only_its_user_may_"
                                                            "give_it)",
    ("POST", "/v1/chat/completions"): "key: acts as the key's user; another user's thread id gets 404 and nothing "
                                      "is written (tests/test_api.py::"
                                      "test_a_second_user_with_the_first_users_thread_gets_nothing)",
    **{(method, path): "admin: a valid password login of an admin account, asked of the database on every request; "
                       "others get 403 and their posts change nothing, even with an admin's form token "
                       "(tests/test_admin.py::test_only_a_logged_in_admin_reaches_the_admin_pages)"
       for method, path in (("GET", "/admin"), ("GET", "/admin/audit"), ("GET", "/admin/teams/{team}"),
                            ("GET", "/admin/usage"), ("GET", "/admin/users"), ("POST", "/admin/teams/{team}"),
                            ("POST", "/admin/teams/{team}/rollback"), ("POST", "/admin/users/{name}/budget"))},
}
SOCKET_EVENTS: dict[str, str] = {
    "connect": "Chainlit refuses another user's thread id and session id",
    "client_message": "owner:test_a_message_with_another_users_step_id_does_not_move_it",
    "edit_message": "owner:test_a_message_with_another_users_step_id_does_not_move_it",
    "connection_successful": "session", "clear_session": "session", "disconnect": "session", "stop": "session",
    "message_favorite": "session: favorites are off; a favorite is a step write, checked by the data layer",
    "fetch_favorites": "session: the caller's own favorites", "window_message": "session",
    "audio_start": "session", "audio_chunk": "session", "audio_end": "session",
    "chat_settings_change": "session", "chat_settings_edit": "session",
}


def test_every_route_and_socket_event_is_classified(tmp_path: Path) -> None:
    """A new route or socket event fails this until it is listed above (with its attack test)."""
    listing = subprocess.run(
        [sys.executable, "-c", (
            "import json, chorus.app as a\n"
            "from chainlit.server import app, sio\n"
            "routes = [[m, getattr(r, 'path', '')] for r in app.router.routes for m in sorted(getattr(r, 'methods', "
            "None) or ['WS'])]\n"
            "print(json.dumps({'routes': routes, 'events': sorted(sio.handlers.get('/', {}))}))")],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={**ChorusServer(tmp_path).env, "CHORUS_ALLOWED_ORIGINS": "http://127.0.0.1:9"},  # widget on too
    )
    assert listing.returncode == 0, listing.stderr[-2000:]
    found = json.loads(listing.stdout.strip().splitlines()[-1])
    routes = {(m, p) for m, p in found["routes"] if m not in ("WS",) and not (m == "HEAD" and p != "/")}
    unlisted = sorted(routes - set(ROUTES))
    assert not unlisted, f"routes nobody has checked for a second user: {unlisted}"
    events = set(found["events"]) - {"*"}
    unclassified = sorted(events - set(SOCKET_EVENTS))
    assert not unclassified, f"socket events not classified: {unclassified}"
    for why in [*ROUTES.values(), *SOCKET_EVENTS.values()]:
        if why.startswith("owner:"):
            assert callable(globals().get(why.split(":", 1)[1])), why
