"""Admins (issue 19): the admin role from the CLI, the admin page's gate, team versions that new
conversations use at once and that roll back, budget resets, usage charts and the audit page,
against a real `chorus run` whose model is a fake OpenAI-compatible provider over HTTP; and the
stored parts on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import ChorusServer, fresh_postgres_database
from test_api import make_keys
from test_quota import PASSWORD, add_accounts

from chorus.store import team_versions, upgrade
from chorus.store.accounts import add_account, is_admin, list_accounts, set_admin
from chorus.store.db import run_with_engine
from chorus.store.schema import usage
from chorus.store.usage import UsageLedger

CANARY = "You are the CANARY-7 assistant: answer in one line."


def _cli(srv: ChorusServer, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "chorus.cli", *args], env=srv.env, cwd=srv.workdir, input=stdin,
                          capture_output=True, text=True, timeout=120)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def _login(srv: ChorusServer, name: str) -> httpx.Client:
    client = httpx.Client(base_url=srv.url, timeout=30, follow_redirects=False)
    response = client.post("/login", data={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _form(html: str) -> dict[str, Any]:
    """The team form as the browser would post it, unchanged: every checked box and every field."""
    form = html.split('class="team">', 1)[1].split("</form>", 1)[0]
    fields: dict[str, Any] = {}

    def add(name: str, value: str) -> None:
        fields.setdefault(name, []).append(value)

    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        if not name:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        if 'type="checkbox"' in tag and " checked" not in tag:
            continue
        add(name.group(1), value.group(1) if value else "")
    for name, text in re.findall(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', form, re.S):
        add(name, text.replace("&quot;", '"').replace("&#x27;", "'").replace("&lt;", "<").replace("&gt;", ">")
            .replace("&amp;", "&"))
    return fields


def _post(client: httpx.Client, path: str, fields: dict[str, Any]) -> httpx.Response:
    return client.post(path, data=fields)


@pytest.fixture(scope="module")
def admin_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChorusServer, Any, str]]:
    from fake_openai import FakeOpenAI, FakeResponse

    workdir = tmp_path_factory.mktemp("admin")
    agents = workdir / "agents"
    agents.mkdir()
    (agents / "solo.yaml").write_text("name: solo\ntype: round_robin\nmembers: [assistant]\ndefault: true\n"
                                      "termination:\n  max_messages: 2\n")
    (agents / "pair.yaml").write_text("name: pair\ntype: round_robin\nmembers: [assistant, guide]\n"
                                      "termination:\n  max_messages: 3\n")
    add_accounts(workdir / "data", "alice")
    key = make_keys(workdir / "data", ("alice", "alice", None))["alice"]
    with FakeOpenAI(default=FakeResponse(text_chunks=["Hello ", "from ", "the ", "fake."])) as fake:
        srv = ChorusServer(workdir, env={
            "CHORUS_MEMORY": "false", "CHORUS_AGENTS_DIR": str(agents), "CHORUS_MODEL": "openai/fake-model",
            "CHORUS_MODEL_API_BASE": fake.url, "CHORUS_MODEL_API_KEY": "sk-test",
            "CHORUS_USER_DAILY_COST_BUDGET": "1.0"})
        _cli(srv, "users", "add", "boss", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
        srv.start()
        try:
            yield srv, fake, key
        finally:
            srv.stop()


def _ask(srv: ChorusServer, key: str, text: str = "Hello?", team: str = "solo") -> httpx.Response:
    return httpx.post(srv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=60,
                      json={"model": f"chorus/{team}", "messages": [{"role": "user", "content": text}]})


def _system_prompt(fake: Any) -> str:
    messages = fake.last_request["messages"]
    return "\n".join(str(m.get("content")) for m in messages if m.get("role") == "system")


def test_the_admin_role_is_given_and_taken_in_the_terminal(admin_site: tuple[ChorusServer, Any, str]) -> None:
    srv, _, _ = admin_site
    listed = {u["name"]: u["admin"] for u in json.loads(_cli(srv, "users", "list", "--json").stdout)}
    assert listed == {"alice": False, "boss": True}
    assert "admin" in _cli(srv, "users", "list").stdout.split("boss", 1)[1].splitlines()[0]
    _cli(srv, "users", "promote", "alice")
    assert json.loads(_cli(srv, "users", "list", "--json").stdout)[0]["admin"] is True
    _cli(srv, "users", "demote", "alice")
    assert json.loads(_cli(srv, "users", "list", "--json").stdout)[0]["admin"] is False
    missing = _cli(srv, "users", "promote", "nobody", ok=False)
    assert missing.returncode != 0 and "no user 'nobody'" in missing.stderr


def test_only_a_logged_in_admin_reaches_the_admin_pages(admin_site: tuple[ChorusServer, Any, str]) -> None:
    srv, _, _ = admin_site
    pages = ["/admin", "/admin/teams/solo", "/admin/users", "/admin/usage", "/admin/audit"]
    anonymous = httpx.Client(base_url=srv.url, timeout=30)
    for page in pages:
        response = anonymous.get(page, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login", page
    boss = _login(srv, "boss")
    token = _csrf(boss.get("/admin/teams/solo").text)
    alice = _login(srv, "alice")
    for page in pages:
        response = alice.get(page)
        assert response.status_code == 403 and "for admins" in response.text, page
    # Another user's form token opens nothing: it belongs to the admin's login.
    for path, fields in (("/admin/teams/solo", {"csrf": token, "member": "assistant", "prompt:assistant": CANARY}),
                         ("/admin/teams/solo/rollback", {"csrf": token, "to": "0"}),
                         ("/admin/users/alice/budget", {"csrf": token})):
        assert alice.post(path, data=fields).status_code == 403, path
    # The admin's own page: the chat page's CSP, nothing loaded from elsewhere.
    for page in pages:
        response = boss.get(page)
        assert response.status_code == 200, page
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert not re.search(r'(src|href)="(https?:)?//', response.text), page
    # A form without the token is refused even for the admin (a post from another site).
    assert boss.post("/admin/users/alice/budget", data={}).status_code == 403
    # Demoted: the next request is refused, no restart, same login.
    _cli(srv, "users", "demote", "boss")
    try:
        assert boss.get("/admin").status_code == 403
    finally:
        _cli(srv, "users", "promote", "boss")
    assert boss.get("/admin").status_code == 200


def test_a_prompt_change_reaches_new_conversations_and_rolls_back(admin_site: tuple[ChorusServer, Any, str]
                                                                  ) -> None:
    srv, fake, key = admin_site
    assert _ask(srv, key).status_code == 200
    assert CANARY not in _system_prompt(fake) and "temperature" not in fake.last_request
    boss = _login(srv, "boss")
    page = boss.get("/admin/teams/solo").text
    fields = _form(page)
    fields["prompt:assistant"] = [CANARY]
    fields["temperature:assistant"] = ["0.3"]
    fields["note"] = ["shorter answers"]
    saved = _post(boss, "/admin/teams/solo", fields)
    assert saved.status_code == 303 and saved.headers["location"].endswith("?done=saved&v=1")
    shown = boss.get(saved.headers["location"]).text
    assert "Saved version 1: new conversations use it." in shown
    assert "Version 1</strong> by boss" in shown and "shorter answers" in shown
    assert "+  system_message: 'You are the CANARY-7 assistant" in shown.replace("&#x27;", "'")
    assert "+  temperature: 0.3" in shown

    assert _ask(srv, key).status_code == 200  # a new conversation, no restart
    assert CANARY in _system_prompt(fake) and fake.last_request["temperature"] == 0.3

    # Saving the form unchanged makes no version.
    again = _post(boss, "/admin/teams/solo", _form(boss.get("/admin/teams/solo").text))
    assert again.headers["location"].endswith("?done=same")
    assert "Nothing changed." in boss.get(again.headers["location"]).text

    # A restart keeps it: versions are in the database.
    srv.stop()
    srv.start()
    assert _ask(srv, key).status_code == 200
    assert CANARY in _system_prompt(fake)

    boss = _login(srv, "boss")
    token = _csrf(boss.get("/admin/teams/solo").text)
    back = boss.post("/admin/teams/solo/rollback", data={"csrf": token, "to": "0", "version": "1"})
    assert "Rolled back to the team file (saved as version 2)." in boss.get(back.headers["location"]).text
    assert _ask(srv, key).status_code == 200
    assert CANARY not in _system_prompt(fake) and "temperature" not in fake.last_request
    # ... and forward again to version 1: a rollback is a new version, history is never rewritten.
    token = _csrf(boss.get("/admin/teams/solo").text)
    boss.post("/admin/teams/solo/rollback", data={"csrf": token, "to": "1"})
    assert _ask(srv, key).status_code == 200
    assert CANARY in _system_prompt(fake)
    history = boss.get("/admin/teams/solo").text
    assert "Version 3</strong> by boss" in history and "rolled back to version 1" in history

    audit = json.loads(_cli(srv, "audit", "--json").stdout)
    changes = [e for e in audit if e["action"] == "admin_change" and e["target"] == "solo"]
    assert [e["detail"]["team_version"] for e in changes] == [3, 2, 1]
    assert all(e["actor"] == "boss" and e["address"] == "127.0.0.1" for e in changes)
    page = boss.get("/admin/audit", params={"action": "admin_change"}).text
    assert page.count("<td>admin_change</td>") >= 3 and "team_version=3" in page


def _speakers(fake: Any, since: int) -> list[tuple[str, list[str]]]:
    """Each model request since ``since``: (the start of its system prompt, the tools it offered)."""
    found = []
    for request in fake.requests[since:]:
        system = next((str(m["content"]) for m in request["messages"] if m.get("role") == "system"), "")
        found.append((system[:40], sorted(t["function"]["name"] for t in request.get("tools") or [])))
    return found


def test_switches_and_order_go_back_and_forth(admin_site: tuple[ChorusServer, Any, str]) -> None:
    """Tools and plugins switched off and on again, and members reordered, reach new conversations."""
    srv, fake, key = admin_site
    boss = _login(srv, "boss")
    start = len(fake.requests)
    assert _ask(srv, key, team="pair").status_code == 200
    before = _speakers(fake, start)
    assert len(before) == 2 and "current_time" in before[0][1]

    def save(change: dict[str, Any]) -> None:
        page = boss.get("/admin/teams/pair").text
        number = len(re.findall(r'id="version-', page)) + 1
        saved = _post(boss, "/admin/teams/pair", {**_form(page), **change})
        assert saved.headers["location"].endswith(f"?done=saved&v={number}"), saved.headers["location"]

    fields = _form(boss.get("/admin/teams/pair").text)
    save({"tool_on": [t for t in fields["tool_on"] if t != "current_time"]})
    start = len(fake.requests)
    assert _ask(srv, key, team="pair").status_code == 200
    assert "current_time" not in _speakers(fake, start)[0][1]
    fields = _form(boss.get("/admin/teams/pair").text)
    assert "current_time" in fields["tool:assistant"]  # the agent's own choice is kept while the team's is off
    save({"tool_on": fields["tool_on"] + ["current_time"]})
    start = len(fake.requests)
    assert _ask(srv, key, team="pair").status_code == 200
    assert _speakers(fake, start)[0] == before[0]

    fields = _form(boss.get("/admin/teams/pair").text)
    save({"plugin_on": [p for p in fields["plugin_on"] if p != "guide"]})
    start = len(fake.requests)
    assert _ask(srv, key, team="pair").status_code == 200
    assert {prompt for prompt, _ in _speakers(fake, start)} == {before[0][0]}  # the guide's plugin is off here
    fields = _form(boss.get("/admin/teams/pair").text)
    assert "guide" in fields["member"]
    save({"plugin_on": fields["plugin_on"] + ["guide"]})
    start = len(fake.requests)
    assert _ask(srv, key, team="pair").status_code == 200
    assert _speakers(fake, start) == before

    save({"order:guide": ["1"], "order:assistant": ["2"]})
    start = len(fake.requests)
    assert _ask(srv, key, team="pair").status_code == 200
    assert _speakers(fake, start) == before[::-1]  # the guide speaks first now


def test_chorus_ask_in_the_terminal_uses_the_newest_version(admin_site: tuple[ChorusServer, Any, str]) -> None:
    srv, fake, _ = admin_site
    url = f"sqlite+aiosqlite:///{(srv.workdir / 'data' / 'chorus.db').resolve()}"
    latest = run_with_engine(url, lambda engine: team_versions.versions(engine, "solo"))
    number = latest[0].version if latest else 0
    run_with_engine(url, lambda engine: team_versions.add_version(
        engine, "solo", {"agents": {"assistant": {"system_message": "You are the TERMINAL-9 assistant."}}},
        author="boss", expected=number))
    _cli(srv, "ask", "--team", "solo", "Hello from the terminal")
    assert "TERMINAL-9" in _system_prompt(fake)


def test_edits_that_cannot_work_are_refused_and_change_nothing(admin_site: tuple[ChorusServer, Any, str]) -> None:
    srv, _, _ = admin_site
    boss = _login(srv, "boss")
    base = _form(boss.get("/admin/teams/solo").text)
    before = re.findall(r"Version (\d+)</strong>", boss.get("/admin/teams/solo").text)
    for change, message in (({"temperature:assistant": ["hot"]}, "temperature must be a number"),
                            ({"temperature:assistant": ["7"]}, "less than or equal to 2"),
                            ({"member": []}, "no members"),
                            ({"max_messages": ["1"]}, "greater than or equal to 2"),
                            ({"version": ["12345"], "prompt:assistant": ["Another prompt."]}, "reload and edit again")):
        response = _post(boss, "/admin/teams/solo", {**base, **change})
        assert response.status_code == 400, change
        assert "Not saved" in response.text and message in response.text, (change, response.text[-2000:])
    assert re.findall(r"Version (\d+)</strong>", boss.get("/admin/teams/solo").text) == before
    assert boss.get("/admin/teams/nope").status_code == 404
    token = _csrf(boss.get("/admin/teams/solo").text)
    assert boss.post("/admin/teams/solo/rollback", data={"csrf": token, "to": "99"}).status_code == 404
    for odd in ("99999999999999999999", "-1", "x"):
        assert boss.post("/admin/teams/solo/rollback", data={"csrf": token, "to": odd}).status_code == 400
    # The message after a save is made from numbers: an address cannot put words on the page.
    assert "evil" not in boss.get("/admin/teams/solo", params={"done": "saved", "v": "evil.example"}).text
    assert "evil" not in boss.get("/admin/users", params={"reset": "log in at evil.example"}).text
    odd = boss.get("/admin/audit", params={"user": "a\x00b", "since": "yesterday", "action": "nope"})
    assert odd.status_code == 200 and "must be a date" in odd.text


def test_a_budget_reset_lets_the_user_go_on_today(admin_site: tuple[ChorusServer, Any, str]) -> None:
    srv, _, key = admin_site
    url = f"sqlite+aiosqlite:///{(srv.workdir / 'data' / 'chorus.db').resolve()}"

    async def spend(engine: Any) -> None:  # a costly call earlier today
        async with engine.begin() as conn:
            await conn.execute(sa.insert(usage).values(
                created_at=datetime.now(UTC), user_identifier="alice", thread_id="t", turn_id="costly", team="solo",
                agent="assistant", model="openai/fake-model", prompt_tokens=1000, completion_tokens=1000, cost=2.5,
                latency_ms=900.0))

    run_with_engine(url, spend)
    refused = _ask(srv, key)
    assert refused.status_code == 429 and "budget" in refused.text.lower(), refused.text
    boss = _login(srv, "boss")
    users = boss.get("/admin/users").text
    assert "$2.5000" in users and "$0.0000 of $1.00 left" in users
    done = boss.post("/admin/users/alice/budget", data={"csrf": _csrf(users)})
    assert done.status_code == 303
    assert "$1.0000 of $1.00 left" in boss.get(done.headers["location"]).text
    assert _ask(srv, key).status_code == 200
    assert boss.post("/admin/users/nobody/budget", data={"csrf": _csrf(users)}).status_code == 404
    audit = json.loads(_cli(srv, "audit", "--json", "--user", "alice").stdout)
    assert any(e["action"] == "admin_change" and e["detail"].get("budget_reset") and e["actor"] == "boss"
               for e in audit)


def test_usage_is_drawn_as_charts_from_the_ledger(admin_site: tuple[ChorusServer, Any, str]) -> None:
    srv, _, key = admin_site
    for _ in range(2):
        assert _ask(srv, key).status_code == 200
    boss = _login(srv, "boss")
    page = boss.get("/admin/usage").text
    for title in ("Cost per day", "Tokens per day", "Turns per day", "Model call latency per day", "Cost per team",
                  "Tokens per agent", "Cost per user", "Thumbs up per team", "Thumbs up per agent"):
        assert f'aria-label="{title}' in page, title
    per_user = page.split('aria-label="Tokens per user"', 1)[1].split("</svg>", 1)[0]
    assert ">alice</text>" in per_user
    per_team = page.split('aria-label="Cost per team"', 1)[1].split("</svg>", 1)[0]
    assert ">solo</text>" in per_team and "$2.50" in per_team


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'chorus.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


def test_roles_versions_and_budget_resets_are_stored(database: str) -> None:
    upgrade(database)

    async def scenario(engine: Any) -> None:
        await add_account(engine, "root", PASSWORD, admin=True)
        await add_account(engine, "ann", PASSWORD)
        assert await is_admin(engine, "root") and not await is_admin(engine, "ann")
        await set_admin(engine, "ann", True)
        assert [a.admin for a in await list_accounts(engine)] == [True, True]
        first = await team_versions.add_version(engine, "music-store", {"agents": {"catalog": {"temperature": 0.1}}},
                                                author="root", diff="-a\n+b\n", expected=0)
        await team_versions.add_version(engine, "music-store", {}, author="ann", note="back", expected=1)
        with pytest.raises(team_versions.VersionConflict):
            await team_versions.add_version(engine, "music-store", {}, author="ann", expected=1)
        listed = await team_versions.versions(engine, "music-store")
        assert [(v.version, v.author, v.note) for v in listed] == [(2, "ann", "back"), (1, "root", "")]
        assert (await team_versions.current(engine))["music-store"].patch == {}
        assert (await team_versions.version(engine, "music-store", 1)) == first
        ledger = UsageLedger(engine)
        async with engine.begin() as conn:
            await conn.execute(sa.insert(usage).values(
                created_at=datetime.now(UTC), user_identifier="ann", thread_id="t", turn_id="x", team="t",
                agent="a", model="m", prompt_tokens=1, completion_tokens=1, cost=3.0, latency_ms=1.0))
        assert await ledger.spent_today("ann") == 3.0
        await ledger.reset_budget("ann", by="root")
        assert await ledger.spent_today("ann") == 0.0
        assert (await ledger.report("user"))[0].cost == 3.0  # the ledger keeps every call

    run_with_engine(database, scenario)
