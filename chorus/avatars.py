"""Each agent's avatar, where Chainlit's page and widget ask for it: ``GET /avatars/{author}``.

Chainlit draws the picture beside a message from ``/avatars/<author name>`` (the widget from the
same path on the Chorus server), and by itself answers every name with one picture. Here:

- an image in ``public/avatars/`` of the directory the server runs in (Chainlit's own rule: the
  author's name in lower case, spaces and dots as ``_``) still wins, for operators;
- an agent whose :class:`~chorus.AgentSpec` has an ``avatar`` shows it: an image file shipped in
  its plugin's package, or an emoji (or one or two letters) drawn on a colour of its own;
- any other agent gets a picture drawn for it: its initials on a colour taken from its name,
  the same on every server and every visit;
- everything else is Chorus's own: its messages (the author ``Chorus``), and the steps Chainlit
  shows under their own names (a tool's, "tokens and cost"), show the Chorus mark.

Names are only ever looked up, never joined to a path, so no name reaches another file. A
plugin's file is read once, checked (type by its first bytes, size), and kept in memory; one that
cannot be used is logged and replaced by the drawn picture. Every answer says its content type,
forbids sniffing and scripts (an SVG opened on its own runs nothing), and may be shown by the
sites that embed the widget.
"""

from __future__ import annotations

import asyncio
import colorsys
import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger("chorus.avatars")

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp", ".svg": "image/svg+xml"}
"""The image files an agent's avatar may be, by their suffix."""
MAX_AVATAR_BYTES = 512 * 1024
MAX_GLYPH_CHARS = 16  # an emoji with its modifiers and joiners (a family, a flag) fits
SVG = "image/svg+xml"
_NAME = re.compile(r"[A-Za-z0-9_ .-]{1,100}")  # Chainlit's own rule for names it serves
_NOT_IN_A_GLYPH = {"Cc", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}  # controls, unassigned, whitespace
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//|[^\\])")  # https://…, data:…, javascript:… (not C:\…)
_HEADERS = {
    "Cache-Control": "public, max-age=300",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "Cross-Origin-Resource-Policy": "cross-origin",  # the widget shows it on the host site's page
}


def check_avatar(agent: str, value: object) -> str | Path:
    """``AgentSpec.avatar`` as Chorus keeps it: the glyph (a ``str``) or the image file (a ``Path``).

    ValueError (the plugin is then reported, like any bad spec) for a web address, a relative
    path, a file that is not a PNG, JPEG, GIF, WebP or SVG, or a glyph that is empty, longer than
    :data:`MAX_GLYPH_CHARS` or holds spaces or control characters. Whether the file exists is
    checked when it is first shown: a missing one is logged and the drawn picture shown instead.
    """
    if isinstance(value, os.PathLike):
        path = Path(os.fspath(value))
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("//") or (_URL.match(text) and not re.match(r"^[A-Za-z]:[\\/]", text)):
            raise ValueError(f"agent {agent!r}: avatar {value!r} is a web address; give an image file shipped in "
                             "the plugin (the page loads images only from the Chorus server)")
        if "/" not in text and "\\" not in text and Path(text).suffix.lower() not in IMAGE_TYPES:
            if not 1 <= len(text) <= MAX_GLYPH_CHARS or any(
                    unicodedata.category(c) in _NOT_IN_A_GLYPH for c in text):
                raise ValueError(f"agent {agent!r}: avatar {value!r} must be an emoji or a few letters (at most "
                                 f"{MAX_GLYPH_CHARS} characters, no spaces) or the path of an image file")
            return text
        path = Path(text)
    else:
        raise TypeError(f"agent {agent!r}: avatar must be a str or a path, not {type(value).__name__}")
    if not path.is_absolute():
        raise ValueError(f"agent {agent!r}: avatar {str(path)!r} must be an absolute path, for example "
                         "Path(__file__).parent / 'avatar.png'")
    if path.suffix.lower() not in IMAGE_TYPES:
        raise ValueError(f"agent {agent!r}: avatar {path.name!r} must be one of {', '.join(sorted(IMAGE_TYPES))}")
    return path


def initials(name: str) -> str:
    """One or two capital letters for ``name``: ``music_expert`` → ``ME``, ``assistant`` → ``A``."""
    parts = [p for p in re.split(r"[_\s.-]+|(?<=[a-z0-9])(?=[A-Z])", name) if p]
    return "".join(p[0] for p in parts[:2]).upper() or "?"


def _colour(name: str, saturation: float, lightness: float) -> str:
    hue = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:2], "big") / 65536
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def drawn_avatar(name: str, glyph: str | None = None) -> bytes:
    """An SVG for ``name``: ``glyph`` (an emoji) on a light colour, else its initials on a strong
    one; the colour comes from the name, so each agent keeps its own."""
    if glyph:
        fill, ink, size, text = _colour(name, 0.7, 0.86), "#18181b", 36, glyph
    else:
        text = initials(name)
        fill, ink, size = _colour(name, 0.6, 0.4), "#ffffff", 30 if len(text) == 1 else 24
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<circle cx="32" cy="32" r="32" fill="{fill}"/>'
        f'<text x="32" y="33" text-anchor="middle" dominant-baseline="central" fill="{ink}" '
        f'font-family="Helvetica, Arial, sans-serif" font-size="{size}" font-weight="700">{escape(text)}</text>'
        "</svg>"
    ).encode()


CHORUS_MARK = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="2 5 40 40">'
    b'<g fill="#e11d74"><circle cx="14" cy="25" r="7"/><circle cx="30" cy="15" r="7" opacity="0.8"/>'
    b'<circle cx="30" cy="35" r="7" opacity="0.6"/></g></svg>'
)
"""The Chorus logo's mark (its three voices), for Chorus's own messages."""


def _is_image(data: bytes, content_type: str) -> bool:
    """Whether ``data`` starts as an image of ``content_type`` does."""
    if content_type == "image/png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if content_type == "image/jpeg":
        return data.startswith(b"\xff\xd8\xff")
    if content_type == "image/gif":
        return data[:6] in (b"GIF87a", b"GIF89a")
    if content_type == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return b"<svg" in data[:4096].lower()


def read_image(path: Path) -> tuple[bytes, str]:
    """The image file's bytes and content type; ValueError (saying why) when it cannot be shown.
    Blocking: call it in a thread."""
    content_type = IMAGE_TYPES.get(path.suffix.lower())
    if content_type is None:
        raise ValueError(f"{path.name} is not a PNG, JPEG, GIF, WebP or SVG file")
    try:
        size = path.stat().st_size
        if size > MAX_AVATAR_BYTES:
            raise ValueError(f"{path} is {size:,} bytes, more than {MAX_AVATAR_BYTES:,}")
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not _is_image(data, content_type):
        raise ValueError(f"{path} is not the {content_type} image its name says")
    return data, content_type


class Avatars:
    """The ``/avatars/{avatar_id:str}`` endpoint (put ahead of Chainlit's, same path).

    ``agents`` gives the registered agents by name; ``system`` is the author of Chorus's own
    messages (always the Chorus mark, whatever agent takes the name); ``public`` is the
    operator's ``public/avatars`` folder (None: not looked at).
    """

    def __init__(self, agents: Callable[[], Mapping[str, Any]], system: str = "Chorus",
                 public: Path | None = None) -> None:
        self.agents = agents
        self.system = system
        self.public = public
        self._pictures: dict[str, tuple[bytes, str]] = {}  # each agent's, made once

    async def endpoint(self, request: Request) -> Response:
        from starlette.responses import Response

        name = request.path_params["avatar_id"]
        spec = None if name in (self.system, "default") else self.agents().get(name)
        if spec is None and not _NAME.fullmatch(name):
            return Response("Unknown avatar.", status_code=404, media_type="text/plain")
        picture = await self._operators(name) if self.public is not None and _NAME.fullmatch(name) else None
        if picture is None:
            picture = await self._picture(name, spec)
        body, content_type = picture
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {**_HEADERS, "ETag": etag}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=content_type, headers=headers)

    async def _operators(self, name: str) -> tuple[bytes, str] | None:
        """An image the operator put in ``public/avatars/`` for this name, as Chainlit would serve it."""
        assert self.public is not None
        public = self.public
        stem = name.strip().lower().replace(" ", "_").replace(".", "_")

        def find() -> tuple[bytes, str] | None:
            if not public.is_dir():
                return None
            for path in sorted(public.glob(f"{stem}.*")):
                if path.suffix.lower() in IMAGE_TYPES and path.resolve().parent == public.resolve():
                    try:
                        return read_image(path)
                    except ValueError as exc:
                        log.warning("the avatar %s is not shown: %s", path, exc)
            return None

        return await asyncio.to_thread(find)

    async def _picture(self, name: str, spec: Any) -> tuple[bytes, str]:
        if spec is None:  # Chorus itself, and the steps Chainlit shows under their own names
            return CHORUS_MARK, SVG
        picture = self._pictures.get(name)
        if picture is None:
            picture = self._pictures[name] = await self._agents(spec)
        return picture

    @staticmethod
    async def _agents(spec: Any) -> tuple[bytes, str]:
        avatar = getattr(spec, "avatar", None)
        if isinstance(avatar, str):
            return drawn_avatar(spec.name, glyph=avatar), SVG
        if avatar is not None:
            try:
                return await asyncio.to_thread(read_image, Path(avatar))
            except ValueError as exc:
                log.warning("agent %r (plugin %r): its avatar is not shown, a drawn one is instead: %s",
                            spec.name, getattr(spec, "plugin", ""), exc)
        return drawn_avatar(spec.name), SVG
