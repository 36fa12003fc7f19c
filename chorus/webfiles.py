"""Files on the page: upload limits, the signed file route, and a message's attachments as text.

Chainlit accepts uploads of any type and up to 500 MB by default and keeps them only for the
session. Here: types and size come from ``CHORUS_UPLOAD_TYPES`` / ``CHORUS_UPLOAD_MAX_MB`` and
are enforced before the body is read; stored conversations keep their files through
:class:`chorus.store.files.LocalFileStore`, served at ``/chorus/files/...`` by signed URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from chainlit.config import config
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from chorus.attachments import Attachment, AttachmentError, read_attachment
from chorus.settings import Settings
from chorus.store.files import LocalFileStore, serving_type

log = logging.getLogger(__name__)

UPLOAD_PATH = "/project/file"
MAX_FILES = 5
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers around the file

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def configure_uploads(settings: Settings) -> None:
    """Apply the upload settings to Chainlit's (the page's file picker reads them too)."""
    feature = config.features.spontaneous_file_upload
    if feature is None:
        return
    feature.enabled = settings.upload_max_mb > 0
    feature.accept = settings.upload_type_list()
    feature.max_files = MAX_FILES
    size = settings.upload_max_mb
    feature.max_size_mb = int(size) if float(size).is_integer() else size  # type: ignore[assignment]  # a float works


class UploadLimit:
    """Refuse an upload whose declared size is over the limit (413) without storing any of it.

    Chainlit checks the size only after the whole body was received and spooled to disk.
    """

    def __init__(self, app: ASGIApp, max_mb: float) -> None:
        self.app = app
        self.max_bytes = int(max_mb * 1024 * 1024) + _FORM_OVERHEAD

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith(UPLOAD_PATH):
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            problem = None
            if length is None or not length.isdigit():
                problem = (411, "An upload must say its size (Content-Length).")
            elif int(length) > self.max_bytes:
                mb = (self.max_bytes - _FORM_OVERHEAD) / 1024 / 1024
                problem = (413, f"This file is too large: the limit is {mb:g} MB.")
            if problem is not None:
                await _discard_body(receive)
                body = json.dumps({"detail": problem[1]}).encode()
                await send({"type": "http.response.start", "status": problem[0],
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def _discard_body(receive: Callable[[], Awaitable[Message]], most: int = 64 * 1024 * 1024) -> None:
    """Read (and drop) what the client is still sending, so that it gets to read the refusal
    instead of a reset connection; a body larger than ``most`` is cut off."""
    seen = 0
    while seen <= most:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def file_route(store: LocalFileStore) -> Callable[[Request], Awaitable[Response]]:
    """The handler of ``/chorus/files/{key:path}``: the file a valid signed URL names, else 404."""

    async def serve(request: Request) -> Response:
        key = request.path_params["key"]
        path = store.verify(key, request.query_params.get("expires", ""), request.query_params.get("signature", ""))
        if path is None:
            return Response("This link is invalid or has expired; reopen the conversation.", status_code=404)
        media_type, inline = serving_type(path.name)
        disposition = "inline" if inline else "attachment"
        return FileResponse(
            path,
            media_type=media_type,
            content_disposition_type=disposition,
            filename=path.name,
            headers={
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox; default-src 'none'",  # never runs what it serves
                "Cache-Control": "private, max-age=300",
            },
        )

    return serve


async def read_attachments(elements: Sequence[Any], settings: Settings) -> list[Attachment]:
    """The readable files among a message's elements, within the settings' character budget.

    Raises AttachmentError naming every file that cannot be read.
    """
    budget = settings.max_attachment_chars
    found: list[Attachment] = []
    problems: list[str] = []
    for element in elements:
        path = getattr(element, "path", None)
        if not path:
            continue
        name = getattr(element, "name", None) or "file"
        if budget <= 0:
            problems.append(f"{name}: the files of one message may hold {settings.max_attachment_chars:,} "
                            "characters in all")
            continue
        try:
            item = await asyncio.to_thread(read_attachment, path=Path(path), name=name,
                                           mime=getattr(element, "mime", None), max_chars=budget)
        except (AttachmentError, OSError) as exc:
            problems.append(str(exc))
            continue
        budget -= len(item.text)
        found.append(item)
    if problems:
        raise AttachmentError("; ".join(problems))
    return found
