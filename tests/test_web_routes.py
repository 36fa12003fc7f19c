"""Chorus's own HTTP routes, in process (httpx's ASGI transport): what each answers, including to
bad input and to a caller without the right token. The page's real server is tested elsewhere
(tests/e2e, tests/test_socket.py); here no server is what is under test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from chorus.store import database_url
from chorus.testing import ChorusFactory
from chorus.web import routes
from chorus.web.context import WebApp, set_current
from chorus.widget import make_token

Client = Callable[..., httpx.AsyncClient]
SITE_SECRET = "the-host-site-secret-of-thirty-two-bytes-or-more"


@pytest.fixture
async def serve(make_chorus: ChorusFactory) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """``serve(history=..., widget_secret=...)``: a client of Chorus's routes on a fresh Chorus."""
    clients: list[httpx.AsyncClient] = []

    def make(**choices: Any) -> httpx.AsyncClient:
        chorus = make_chorus(installed="chorus")  # the built-in agents, on the offline model
        web = WebApp(chorus=chorus, database_url=database_url(chorus.settings), **choices)
        set_current(web)
        app = Starlette()
        routes.install(app, web)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_status_says_which_teams_answer_offline(serve: Client) -> None:
    answer = await serve(history=False).get("/chorus/status")
    assert answer.status_code == 200
    body = answer.json()
    assert body["default"] == "Chorus" and body["offline"] == {"Chorus": True}
    assert "Offline model in use" in body["notice"]


async def test_static_files_are_served_and_nothing_outside_them(serve: Client) -> None:
    client = serve(history=False)
    script = await client.get("/chorus/static/chorus.js")
    assert script.status_code == 200 and "chorus-model-banner" in script.text
    for escape in ("/chorus/static/..%2Fapp.py", "/chorus/static/%2E%2E%2Fsettings.py", "/chorus/static/nothing.js"):
        assert (await client.get(escape)).status_code == 404, escape
    logo = await client.get("/logo", params={"theme": "light"})
    assert logo.status_code == 200 and logo.headers["content-type"].startswith("image/svg+xml")


async def test_each_agent_has_its_avatar(serve: Client) -> None:
    client = serve(history=False)
    mine = await client.get("/avatars/assistant")
    other = await client.get("/avatars/librarian")
    assert mine.status_code == other.status_code == 200
    assert mine.content != other.content  # initials on colours of their own


async def test_a_trace_link_without_tracing_says_why(serve: Client) -> None:
    client = serve(history=False)
    for turn in ("abc123", "not-alnum'--"):
        answer = await client.get(f"/chorus/trace/{turn}")
        assert answer.status_code == 404 and "No trace for this answer" in answer.text


async def test_the_new_chat_dialog_tells_the_truth_about_history(serve: Client) -> None:
    kept = await serve(history=True).get("/project/translations", params={"language": "en-US"})
    assert kept.status_code == 200
    assert kept.json()["translation"]["navigation"]["newChat"]["dialog"]["description"] == routes.NEW_CHAT_KEPT
    cleared = await serve(history=False).get("/project/translations", params={"language": "en-US"})
    assert cleared.json()["translation"]["navigation"]["newChat"]["dialog"]["description"] != routes.NEW_CHAT_KEPT
    refused = await serve(history=False).get("/project/translations", params={"language": "../../etc/passwd"})
    assert refused.status_code == 422


async def test_the_widget_sign_in_takes_only_a_good_token(serve: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "a-test-secret-of-enough-length-for-jwt-signing")
    off = await serve(history=False).post("/auth/jwt", headers={"Authorization": "Bearer x"})
    assert off.status_code == 401 and "widget is off" in off.json()["detail"]

    client = serve(history=True, widget_secret=SITE_SECRET)
    assert (await client.post("/auth/jwt")).status_code == 401
    forged = make_token("eve", secret="another-site-secret-of-thirty-two-bytes-or-more", ttl_s=60)
    refused = await client.post("/auth/jwt", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    unknown = make_token("ann", secret=SITE_SECRET, ttl_s=60, team="no-such-team")
    assert (await client.post("/auth/jwt", headers={"Authorization": f"Bearer {unknown}"})).status_code == 401

    good = make_token("ann", secret=SITE_SECRET, ttl_s=120)
    signed_in = await client.post("/auth/jwt", headers={"Authorization": f"Bearer {good}"})
    assert signed_in.status_code == 200 and signed_in.json() == {"success": True}
    cookie = signed_in.headers["set-cookie"].lower()
    age = int(cookie.split("max-age=")[1].split(";")[0])
    minutes = 60 * 60  # CHORUS_WIDGET_SESSION_MINUTES' default, as the token ends sooner
    assert minutes - 5 <= age <= minutes  # not Chainlit's 15 days
