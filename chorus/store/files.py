"""Files of conversations (uploads, exports, elements) on local disk, served by signed URLs.

Chainlit's data layer hands every element to a storage client and keeps only its object key;
without one, uploaded files vanish with the session. :class:`LocalFileStore` keeps them under
``CHORUS_HOME/files/<user id>/<element id>/<name>`` and gives the page URLs that carry an
expiring HMAC signature (like a cloud bucket's presigned URLs), so only someone who was handed
the URL by the thread's owner's page can read a file. ``/chorus/files/...`` in ``chorus.app``
checks the signature and serves the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import mimetypes
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from chorus.settings import Settings

ROUTE = "/chorus/files/"
URL_TTL_S = 3600
_UNSAFE = re.compile(r"[^A-Za-z0-9._ @+=-]")
# Served as what they are; anything else (HTML, SVG, scripts...) is served as a download.
_INLINE_TYPES = {
    "text/plain", "text/markdown", "text/csv", "application/json", "application/pdf",
    "image/png", "image/jpeg", "image/gif", "image/webp",
}


def files_root(settings: Settings) -> Path:
    """Where conversation files live: ``files/`` in the data directory."""
    return settings.home.expanduser() / "files"


class FileStoreError(Exception):
    """A key that does not name a file of this store."""


def safe_key(key: str) -> str:
    """``key`` as a relative path that stays inside the store: each part cleaned, no '..'."""
    parts = []
    for part in key.replace("\\", "/").split("/"):
        part = _UNSAFE.sub("_", part).strip(" .")
        if part:
            parts.append(part[:150])
    if not parts:
        raise FileStoreError(f"not a file key: {key!r}")
    return "/".join(parts)


def serving_type(name: str) -> tuple[str, bool]:
    """(Content-Type, inline?) to serve a file named ``name`` with."""
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if mime in _INLINE_TYPES:
        return (mime + "; charset=utf-8" if mime.startswith("text/") else mime), True
    return "application/octet-stream", False


_DRAWING = b"<!--chorus-drawing "


def delete_owner_files(root: Path, user_id: str) -> None:
    """Delete every file of the user whose Chainlit user id is ``user_id`` (blocking)."""
    root = root.expanduser().resolve()
    folder = (root / safe_key(user_id)).resolve()
    if folder.parent == root:
        shutil.rmtree(folder, ignore_errors=True)


class LocalFileStore:
    """A Chainlit storage client (the methods of ``BaseStorageClient``, which is not imported
    because importing chainlit costs seconds for the CLI) on local disk; blocking file work runs
    in a thread."""

    def __init__(self, root: Path, secret: str, ttl_s: int = URL_TTL_S) -> None:
        self.root = root.expanduser().resolve()
        # A key of its own, derived from the login secret: a file link can never sign a cookie.
        self._secret = hmac.new(secret.encode("utf-8"), b"chorus file links", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def path(self, key: str) -> Path:
        path = (self.root / safe_key(key)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise FileStoreError(f"not a file key: {key!r}")
        return path

    def _write(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)  # readers never see half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def upload_file(
        self,
        object_key: str,
        data: bytes | str,
        mime: str = "application/octet-stream",
        overwrite: bool = True,
        content_disposition: str | None = None,
    ) -> dict[str, Any]:
        key = safe_key(object_key)
        if not overwrite and self.path(key).exists():
            raise FileStoreError(f"file {key!r} exists")
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        await asyncio.to_thread(self._write, key, payload)
        return {"object_key": key, "url": await self.get_read_url(key)}

    async def delete_file(self, object_key: str) -> bool:
        def delete() -> bool:
            path = self.path(object_key)
            if not path.exists():
                return False
            path.unlink()
            # Remove the element's now-empty folder (and its user's), never the root.
            for parent in (path.parent, path.parent.parent):
                if parent != self.root and parent.is_relative_to(self.root) and not any(parent.iterdir()):
                    parent.rmdir()
            return True

        return await asyncio.to_thread(delete)

    def sign_drawing(self, svg: bytes) -> bytes:
        """An SVG Chorus drew itself (a turn map), marked with a signature of its bytes: the file
        route serves such a drawing as a picture; any other SVG (an upload, a file in a reply) is a
        download, whatever it holds."""
        mac = hmac.new(self._secret, b"drawing\n" + svg, hashlib.sha256).hexdigest().encode()
        return _DRAWING + mac + b" -->\n" + svg

    def signed_drawing(self, data: bytes) -> bool:
        """Whether ``data`` is a drawing :meth:`sign_drawing` marked, unchanged since."""
        if not data.startswith(_DRAWING):
            return False
        head, sep, svg = data[len(_DRAWING):].partition(b" -->\n")
        mac = hmac.new(self._secret, b"drawing\n" + svg, hashlib.sha256).hexdigest().encode()
        return bool(sep) and hmac.compare_digest(head, mac)

    def _signature(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    async def get_read_url(self, object_key: str) -> str:
        key = safe_key(object_key)
        expires = int(time.time()) + self.ttl_s
        return f"{ROUTE}{quote(key)}?expires={expires}&signature={self._signature(key, expires)}"

    def verify(self, key: str, expires: str, signature: str) -> Path | None:
        """The file a signed URL names, or None when the URL is forged, altered or expired."""
        try:
            deadline = int(expires)
            clean = safe_key(key)
        except (ValueError, FileStoreError):
            return None
        expected = self._signature(clean, deadline).encode()
        if deadline < time.time() or not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
            return None
        path = self.path(clean)
        return path if path.is_file() else None

    async def close(self) -> None:
        return None
