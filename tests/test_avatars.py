"""Agents' avatars (chorus.avatars): what a plugin may give, and what GET /avatars/{name} answers.

The browser tests (tests/e2e/test_browser_avatars.py) show them on the page and in the widget;
these pin down what must never happen: another file served, a picture from elsewhere, a script.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from chorus import AgentSpec
from chorus.avatars import CHORUS_MARK, MAX_AVATAR_BYTES, Avatars, check_avatar, drawn_avatar, initials

PNG = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0) + \
    struct.pack(">I", zlib.crc32(b"IHDR" + struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)))


class _Client:
    """GET requests to the route alone, in a Starlette app of its own."""

    def __init__(self, avatars: Avatars) -> None:
        self.app = Starlette(routes=[Route("/avatars/{avatar_id:str}", avatars.endpoint)])

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def get() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://t") as client:
                return await client.get(path, headers=headers)

        return asyncio.run(get())


def _client(tmp_path: Path, *specs: AgentSpec, public: Path | None = None) -> _Client:
    agents = {s.name: s for s in specs}
    return _Client(Avatars(lambda: agents, system="Chorus", public=public))


# -- what a plugin may give ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["https://cdn.example/dj.png", "http://10.0.0.1/x.svg", "data:image/png;base64,AAAA",
                                   "javascript:alert(1)", "//cdn.example/dj.png"])
def test_a_web_address_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"web address|absolute path"):
        AgentSpec(name="dj", description="Plays records.", avatar=value)


@pytest.mark.parametrize("value", ["dj.png", "img/dj.png", Path("dj.png"), "../../etc/passwd.png"])
def test_a_relative_path_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        AgentSpec(name="dj", description="Plays records.", avatar=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["/etc/passwd", "/srv/plugin/dj.html", Path("/srv/plugin/dj.exe")])
def test_only_image_files_are_accepted(value: object) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        AgentSpec(name="dj", description="Plays records.", avatar=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "   ", "two words", "x" * 17, "a\u0000b", "tab\there"])
def test_a_glyph_is_short_and_printable(value: str) -> None:
    with pytest.raises(ValueError):
        AgentSpec(name="dj", description="Plays records.", avatar=value)


def test_a_glyph_an_absolute_path_or_none_are_kept(tmp_path: Path) -> None:
    assert AgentSpec(name="dj", description="Plays records.", avatar=" 🎧 ").avatar == "🎧"
    assert AgentSpec(name="dj", description="Plays records.", avatar="👩‍🚀").avatar == "👩‍🚀"  # a ZWJ sequence
    file = tmp_path / "dj.PNG"
    assert AgentSpec(name="dj", description="Plays records.", avatar=str(file)).avatar == file
    assert AgentSpec(name="dj", description="Plays records.", avatar=file).avatar == file
    assert AgentSpec(name="dj", description="Plays records.").avatar is None
    with pytest.raises(TypeError):
        check_avatar("dj", 42)


# -- what the route answers --------------------------------------------------------------------------


def test_each_agent_gets_its_own_drawn_picture_and_chorus_its_mark(tmp_path: Path) -> None:
    client = _client(tmp_path, AgentSpec(name="assistant", description="a"), AgentSpec(name="guide", description="g"),
                     AgentSpec(name="music_expert", description="m"))
    pictures = {name: client.get(f"/avatars/{name}") for name in ("assistant", "guide", "music_expert", "Chorus")}
    for response in pictures.values():
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in response.headers["content-security-policy"]
        assert "<script" not in response.text
        ET.fromstring(response.content)  # well-formed
    assert len({r.content for r in pictures.values()}) == 4
    assert pictures["Chorus"].content == CHORUS_MARK
    assert client.get("/avatars/default").content == CHORUS_MARK
    assert ">ME<" in pictures["music_expert"].text and ">A<" in pictures["assistant"].text
    assert client.get("/avatars/assistant").content == pictures["assistant"].content  # the same every time
    assert initials("musicExpert") == "ME" and initials("x") == "X"


def test_anything_that_is_not_an_agent_shows_the_chorus_mark(tmp_path: Path) -> None:
    client = _client(tmp_path, AgentSpec(name="assistant", description="a"))
    for name in ("tokens and cost", "current_time", "removed_agent"):
        assert client.get(f"/avatars/{name}").content == CHORUS_MARK


def test_an_agent_named_like_chorus_does_not_take_its_mark(tmp_path: Path) -> None:
    client = _client(tmp_path, AgentSpec(name="Chorus", description="An impostor.", avatar="😈"))
    assert client.get("/avatars/Chorus").content == CHORUS_MARK


def test_a_plugins_file_is_served_with_its_type(tmp_path: Path) -> None:
    png, svg = tmp_path / "dj.png", tmp_path / "mc.svg"
    png.write_bytes(PNG)
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    client = _client(tmp_path, AgentSpec(name="dj", description="d", avatar=png),
                     AgentSpec(name="mc", description="m", avatar=svg),
                     AgentSpec(name="vj", description="v", avatar="🎬"))
    served = client.get("/avatars/dj")
    assert served.headers["content-type"] == "image/png" and served.content == PNG
    scripted = client.get("/avatars/mc")
    assert scripted.headers["content-type"].startswith("image/svg+xml")
    assert "sandbox" in scripted.headers["content-security-policy"]  # opened on its own, it runs nothing
    assert "script-src" not in scripted.headers["content-security-policy"]
    glyph = client.get("/avatars/vj")
    assert "🎬" in glyph.text and glyph.headers["content-type"].startswith("image/svg+xml")
    again = client.get("/avatars/dj", headers={"If-None-Match": served.headers["etag"]})
    assert again.status_code == 304 and not again.content


def test_a_glyph_is_escaped(tmp_path: Path) -> None:
    text = drawn_avatar("dj", glyph="<&>").decode()
    assert "&lt;&amp;&gt;" in text
    ET.fromstring(text)


def test_a_file_that_cannot_be_shown_is_replaced_by_the_drawn_picture(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("<html><script>alert(1)</script></html>")  # not a PNG, whatever its name says
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\x00" * MAX_AVATAR_BYTES)
    missing = tmp_path / "missing.gif"
    client = _client(tmp_path, AgentSpec(name="fake", description="f", avatar=fake),
                     AgentSpec(name="big", description="b", avatar=big),
                     AgentSpec(name="gone", description="g", avatar=missing))
    with caplog.at_level(logging.WARNING, logger="chorus.avatars"):
        for name in ("fake", "big", "gone"):
            response = client.get(f"/avatars/{name}")
            assert response.status_code == 200
            assert response.content == drawn_avatar(name)
            assert response.headers["content-type"].startswith("image/svg+xml")
    assert "fake.png is not the image/png image" in caplog.text
    assert "more than" in caplog.text and "cannot read" in caplog.text


def test_no_name_reaches_another_file(tmp_path: Path) -> None:
    public = tmp_path / "public" / "avatars"
    public.mkdir(parents=True)
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG + b"SECRET")
    (public / "ops.png").write_bytes(PNG)
    os.symlink(secret, public / "leak.png")
    client = _client(tmp_path, public=public)
    for name in ("..%2Fsecret", "..%2F..%2Fsecret.png", "%2e%2e%2fsecret", "leak", "secret", "*", "..",
                 "..\\secret", "%00"):
        response = client.get(f"/avatars/{name}")
        assert b"SECRET" not in response.content, name
        assert response.status_code in (200, 404), name
    # The operator's own image in public/avatars/ wins (Chainlit's rule), with its type.
    ops = client.get("/avatars/Ops")
    assert ops.content == PNG and ops.headers["content-type"] == "image/png"
