"""A user's own provider key: entered in the page's settings over the real socket, stored encrypted,
used for that user's calls only (the page, after a reconnect and a restart, and the API), marked
in the cost ledger, deletable, and found nowhere in plain text: not in the database (the thread's
metadata included), the logs, MLflow's store, or an error a provider sends back quoting it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from chat_client import ChatClient, login_cookie
from conftest import ChorusServer
from fake_openai import FakeOpenAI, FakeResponse
from test_api import make_keys
from test_quota import PASSWORD, add_accounts

KEY = "sk-alice-PERSONAL-7f3e9d2c"
OPERATOR = "sk-operator-0000-1111"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChorusServer, FakeOpenAI, str]]:
    workdir = tmp_path_factory.mktemp("keys")
    agents = workdir / "agents"
    agents.mkdir()
    (agents / "solo.yaml").write_text("name: solo\ntype: round_robin\nmembers: [assistant]\ndefault: true\n"
                                      "termination:\n  max_messages: 2\n")
    add_accounts(workdir / "data", "alice", "bob")
    api_key = make_keys(workdir / "data", ("alice", "alice", None))["alice"]
    with FakeOpenAI(default=FakeResponse(text_chunks=["Hello ", "from ", "the ", "fake."])) as fake:
        srv = ChorusServer(workdir, env={
            "CHORUS_MEMORY": "false", "CHORUS_AGENTS_DIR": str(agents), "CHORUS_MODEL": "openai/other-model",
            "CHORUS_MODEL_API_BASE": fake.url, "CHORUS_MODEL_API_KEY": OPERATOR, "CHORUS_TRACING": "true",
            "CHORUS_DEGRADE_TO_OFFLINE": "false", "CHORUS_MODEL_RETRIES": "0",
            "CHORUS_PERSONAL_KEY_API_BASE": fake.url})  # (users' keys go to the provider's own endpoint otherwise)
        srv.start()
        try:
            yield srv, fake, api_key
        finally:
            srv.stop()


class Page(ChatClient):
    """The page's socket, also recording the settings panels the server sends."""

    def __init__(self, srv: ChorusServer, user: str) -> None:
        super().__init__(srv, cookie=login_cookie(srv.url, user, PASSWORD))
        self.panels: list[list[dict[str, Any]]] = []
        self.sio.on("chat_settings", lambda data: self.panels.append(data))

    async def settings(self, **values: Any) -> None:
        await self.sio.emit("chat_settings_change", {"provider_key": "", "provider_model": "",
                                                     "forget_provider_key": False, **values})

    async def said(self, needle: str) -> dict[str, Any]:
        return await self.wait_for(lambda m: needle in (m.get("output") or ""), timeout=30)


async def opened(srv: ChorusServer, user: str) -> Page:
    page = Page(srv, user)
    await page.connect()
    return page


def bearer(fake: FakeOpenAI) -> str:
    return fake.headers[-1]["authorization"].removeprefix("Bearer ")


async def _ask(page: Page, fake: FakeOpenAI, text: str = "Hello?") -> tuple[str, str]:
    """Ask, wait for the reply; (the key the provider got, the model asked for)."""
    before = len(fake.requests)
    page.messages.clear()
    await page.send(text)
    await page.wait_for(lambda m: m.get("type") == "assistant_message" and m.get("name") == "assistant"
                        and "fake" in (m.get("output") or ""), timeout=60)
    assert len(fake.requests) > before
    return bearer(fake), fake.requests[-1]["model"]


def test_a_users_own_key_is_used_for_their_calls_only_and_is_found_nowhere_in_plain_text(
        site: tuple[ChorusServer, FakeOpenAI, str]) -> None:
    srv, fake, api_key = site

    async def enter_and_use() -> str:
        alice = await opened(srv, "alice")
        try:
            for _ in range(1200):  # (the first chat of a process imports litellm: seconds)
                if alice.panels:
                    break
                await asyncio.sleep(0.05)
            fields = {f["id"]: f for f in alice.panels[-1]}
            assert fields["provider_key"]["initial"] == "" and "saved" not in fields["provider_key"]["placeholder"]
            assert await _ask(alice, fake) == (OPERATOR, "other-model")  # before: the deployment's key

            await alice.settings(provider_key=KEY)  # no model: refused, nothing saved
            assert "say which model your key is for" in (await alice.said("was not saved"))["output"]
            alice.messages.clear()  # a provider that bills the server's own credentials: refused
            await alice.settings(provider_key=KEY, provider_model="vertex_ai/gemini-pro")
            assert "personal keys work with openai, anthropic" in (await alice.said("was not saved"))["output"]
            alice.messages.clear()
            await alice.settings(provider_key="short", provider_model="openai/fake-model")
            assert "16 to 512 characters" in (await alice.said("was not saved"))["output"]
            await alice.settings(provider_key=KEY, provider_model="openai/fake-model")
            saved = await alice.said("is saved, encrypted")
            assert "••••9d2c" in saved["output"] and KEY not in saved["output"]
            panel = {f["id"]: f for f in alice.panels[-1]}
            assert panel["provider_key"]["initial"] == "" and "••••9d2c" in panel["provider_key"]["placeholder"]
            assert panel["provider_model"]["initial"] == "openai/fake-model"
            assert await _ask(alice, fake) == (KEY, "fake-model")  # at once, in the same conversation

            bob = await opened(srv, "bob")
            try:
                assert await _ask(bob, fake) == (OPERATOR, "other-model")  # never another user's
            finally:
                await bob.sio.disconnect()

            # A provider's error that quotes the key: the user reads it masked.
            fake.queue_error(401, f"Incorrect API key provided: {KEY}. You can find your API key at ...")
            alice.messages.clear()
            await alice.send("And now?")
            failed = await alice.wait_for(lambda m: m.get("isError"), timeout=60)
            assert KEY not in failed["output"]
            return alice.thread_id
        finally:
            await alice.sio.disconnect()

    thread = asyncio.run(enter_and_use())
    # The API, as alice: her key too.
    reply = httpx.post(srv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {api_key}"}, timeout=60,
                       json={"model": "chorus/solo", "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 200, reply.text
    assert bearer(fake) == KEY

    # After a restart, her next conversation still uses it; then she deletes it.
    srv.stop()
    srv.start()

    async def after_restart() -> None:
        alice = await opened(srv, "alice")
        try:
            assert await _ask(alice, fake) == (KEY, "fake-model")
            await alice.settings(forget_provider_key=True)
            await alice.said("Your key was deleted")
            assert await _ask(alice, fake) == (OPERATOR, "other-model")
        finally:
            await alice.sio.disconnect()

    asyncio.run(after_restart())
    data = srv.workdir / "data"
    with sqlite3.connect(data / "chorus.db") as db:
        paid: dict[str, set[str]] = {}
        for user, source in db.execute("SELECT user_identifier, key_source FROM chorus_usage"):
            paid.setdefault(user, set()).add(source)
        assert paid == {"alice": {"operator", "user"}, "bob": {"operator"}}  # her own key's calls are marked
        assert db.execute("SELECT count(*) FROM chorus_personal_keys").fetchone()[0] == 0  # deleted
        assert db.execute("SELECT count(*) FROM threads WHERE id = ?", (thread,)).fetchone()[0] == 1
    srv.stop()  # every file written and closed (logs, WAL, traces)
    srv.start()
    found = [str(p) for p in srv.workdir.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert found == [], "the key is in plain text in " + ", ".join(found)
    secret = data / "secret_key"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600


def test_a_stored_key_is_encrypted_with_the_servers_secret(site: tuple[ChorusServer, FakeOpenAI, str]) -> None:
    from cryptography.fernet import Fernet

    srv, _fake, _ = site

    async def save() -> None:
        alice = await opened(srv, "alice")
        try:
            await alice.settings(provider_key=KEY, provider_model="openai/fake-model")
            await alice.said("is saved, encrypted")
        finally:
            await alice.sio.disconnect()

    asyncio.run(save())
    data = srv.workdir / "data"
    with sqlite3.connect(data / "chorus.db") as db:
        encrypted, model, hint = db.execute("SELECT encrypted, model, hint FROM chorus_personal_keys "
                                            "WHERE user_identifier = 'alice'").fetchone()
    assert KEY not in encrypted and model == "openai/fake-model" and hint == "9d2c"
    assert Fernet((data / "secret_key").read_text().strip().encode()).decrypt(encrypted.encode()).decode() == KEY
