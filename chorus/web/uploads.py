"""Files on the page: upload limits, the signed file route, and a message's attachments as text.

Chainlit accepts uploads of any type and up to 500 MB by default and keeps them only for the
session. Here: types and size come from ``CHORUS_UPLOAD_TYPES`` / ``CHORUS_UPLOAD_MAX_MB``, and
each user's quota (``CHORUS_UPLOAD_FILES_PER_HOUR`` / ``_MB_PER_HOUR`` / ``_MB_TOTAL``, see
:mod:`chorus.store.quota`) is enforced before the body is read; stored conversations keep their files through
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
from chorus.settings import Settings, get_settings
from chorus.store.db import StoreError
from chorus.store.files import LocalFileStore, files_root, serving_type
from chorus.store.quota import QuotaLimits, QuotaRefusal, QuotaStore
from chorus.web.limiter import Refusal, limiter

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
    """Refuse an upload whose declared size is over the limit (413), or that would go over its
    user's quota (429), without storing any of it.

    Chainlit checks the size only after the whole body was received and spooled to disk, and
    has no quota at all. Quotas are per signed-in user (the login cookie or bearer token);
    without logins, per client address (the session id is the client's own choice, so a fresh
    one would be a fresh quota).
    """

    def __init__(self, app: ASGIApp, max_mb: float, settings: Settings | None = None,
                 quota: QuotaStore | None = None) -> None:
        self.app = app
        self.max_bytes = int(max_mb * 1024 * 1024) + _FORM_OVERHEAD
        self.settings = settings or get_settings()
        self._quota = quota

    def quota(self) -> QuotaStore | None:
        """The quota store (made on first use, in the server's event loop); None without caps."""
        if self._quota is None:
            limits = QuotaLimits.from_settings(self.settings)
            if not limits.any:
                return None
            from chorus.auth import ensure_auth_secret
            from chorus.store.db import database_url, make_engine

            root = files_root(self.settings)
            own = LocalFileStore(root, ensure_auth_secret(self.settings.home)).signed_drawing
            self._quota = QuotaStore(make_engine(database_url(self.settings)), limits, root, own)
        return self._quota

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith(UPLOAD_PATH):
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            problem: tuple[int, dict[str, Any], list[tuple[bytes, bytes]]] | None = None
            reservation = 0
            if length is None or not length.isdigit():
                problem = (411, {"detail": "An upload must say its size (Content-Length)."}, [])
            elif int(length) > self.max_bytes:
                mb = (self.max_bytes - _FORM_OVERHEAD) / 1024 / 1024
                problem = (413, {"detail": f"This file is too large: the limit is {mb:g} MB."}, [])
            else:
                quota, caller = self.quota(), _caller(scope)
                refusal = await self._rate(caller)
                if refusal is not None:
                    problem = (429, {"detail": refusal.message("files")},
                               [(b"retry-after", str(refusal.retry_after).encode())])
                elif quota is not None and caller is not None:  # no caller: Chainlit refuses the login
                    try:
                        outcome = await quota.reserve(caller[0], int(length), identifier=caller[1])
                    except StoreError as exc:
                        log.error("upload refused: %s", exc)
                        outcome = None
                        problem = (503, {"detail": "Uploads are unavailable for a moment (the upload quota "
                                                   "could not be checked); please try again."}, [])
                    if isinstance(outcome, QuotaRefusal):
                        problem = _refusal(outcome)
                    elif outcome is not None:
                        reservation = outcome
            if problem is not None:
                await _discard_body(receive)
                await send({"type": "http.response.start", "status": problem[0],
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                        *problem[2]]})
                await send({"type": "http.response.body", "body": json.dumps(problem[1]).encode()})
                return
            if reservation:
                await self._counted(scope, receive, send, reservation)
                return
        await self.app(scope, receive, send)

    async def _rate(self, caller: tuple[str, str | None] | None) -> Refusal | None:
        """CHORUS_UPLOAD_RATE_LIMITS for this caller (a user, or a visitor's address)."""
        if self.settings is None or caller is None or not self.settings.upload_rate_limits:
            return None
        return await limiter(self.settings).hit("uploads", caller[1] or caller[0])

    async def _counted(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]], reservation: int) -> None:
        """Pass the upload on; an upload Chainlit did not store (any answer but 2xx) gives its
        place in the quota back."""
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if not 200 <= status < 300:
                quota = self.quota()
                if quota is not None:
                    await quota.release(reservation)


def _caller(scope: Scope) -> tuple[str, str | None] | None:
    """(quota key, signed-in user's identifier) of an upload request.

    With logins on, the user whose valid token the request carries (None when it carries none:
    Chainlit then refuses the upload itself); without logins, the client's address (as the
    server sees it: uvicorn takes X-Forwarded-For from the proxies in FORWARDED_ALLOW_IPS).
    """
    from chainlit.auth import require_login

    if require_login():
        from chainlit.auth.cookie import get_token_from_cookies
        from chainlit.auth.jwt import decode_jwt

        request = Request(scope)
        token = get_token_from_cookies(dict(request.cookies))
        if not token:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        if not token:
            return None
        try:
            identifier = str(decode_jwt(token).identifier)
        except Exception:  # expired, forged: Chainlit answers 401
            return None
        return f"user:{identifier}", identifier
    client = scope.get("client")
    return f"address:{client[0] if client else 'unknown'}", None


def _refusal(refusal: QuotaRefusal) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    """A 429 answer whose ``detail`` the page shows as it is."""
    retry = refusal.retry_after_s()
    body: dict[str, Any] = {"detail": refusal.message, "limit": refusal.limit, "retry_after": retry}
    return 429, body, [] if retry is None else [(b"retry-after", str(retry).encode())]


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
        if path.suffix.lower() == ".svg" and await asyncio.to_thread(lambda: store.signed_drawing(path.read_bytes())):
            media_type, inline = "image/svg+xml", True  # a drawing of Chorus's own (a turn map)
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
