"""Files a user attaches to a message, turned into text the team can read.

Text files (plain, Markdown, CSV, JSON, code) are read as UTF-8; PDFs through pypdf. What is
read goes into the team's task after the user's words, each file fenced and named, up to
``CHORUS_MAX_ATTACHMENT_CHARS`` characters in all. Which files may be uploaded at all (type
and size) is decided before they reach this module, by ``CHORUS_UPLOAD_TYPES`` and
``CHORUS_UPLOAD_MAX_MB`` (see ``chorus.app``).
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

TEXT_TYPES = ("text/*", "application/json", "application/x-yaml", "application/yaml", "application/xml")
PDF = "application/pdf"


class AttachmentError(Exception):
    """A file that cannot be read as text; the message says which and why."""


@dataclass(frozen=True)
class Attachment:
    """One attached file, as text."""

    name: str
    text: str
    truncated: bool = False


def type_of(name: str, mime: str | None = None) -> str:
    """The file's media type: the one given, or guessed from its name."""
    given = (mime or "").split(";")[0].strip().lower()
    if given and given != "application/octet-stream":
        return given
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def allowed(mime: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch(mime, pattern.strip()) for pattern in patterns if pattern.strip())


def read_attachment(path: Path, name: str, mime: str | None = None, *, max_chars: int) -> Attachment:
    """Read ``path`` (blocking) as text, at most ``max_chars`` characters."""
    kind = type_of(name, mime)
    if allowed(kind, TEXT_TYPES):
        raw = path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        if "\x00" in text[:4096]:
            raise AttachmentError(f"{name} is not a text file")
    elif kind == PDF:
        text = _pdf_text(path, name, max_chars)
    else:
        raise AttachmentError(f"{name}: files of type {kind} cannot be read by the team (text and PDF only)")
    text = text.strip()
    if len(text) > max_chars:
        return Attachment(name=name, text=text[:max_chars], truncated=True)
    return Attachment(name=name, text=text)


def _pdf_text(path: Path, name: str, max_chars: int) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages: list[str] = []
        size = 0
        for page in reader.pages:
            if size > max_chars:
                break  # enough: do not parse the rest of a huge document
            pages.append(page.extract_text() or "")
            size += len(pages[-1])
    except (PdfReadError, OSError, ValueError, KeyError) as exc:
        raise AttachmentError(f"{name} could not be read as a PDF ({exc})") from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise AttachmentError(f"{name} has no text layer (a scanned PDF?); the team cannot read it")
    return text


def with_attachments(text: str, attachments: Sequence[Attachment]) -> str:
    """The user's words followed by each attached file, fenced and named."""
    parts = [text] if text else []
    for item in attachments:
        fence = "```"
        while fence in item.text:
            fence += "`"
        note = " (truncated)" if item.truncated else ""
        parts.append(f"Attached file {item.name}{note}:\n{fence}\n{item.text}\n{fence}")
    return "\n\n".join(parts)


_BLOCK = re.compile(
    r"\n*Attached file (?P<name>.+?)(?: \(truncated\))?:\n(?P<fence>`{3,})\n(?P<text>.*?)\n(?P=fence)(?=\n|$)", re.S
)


def split_attachments(text: str) -> tuple[str, list[Attachment]]:
    """The inverse of :func:`with_attachments`: (the user's words, the attached files)."""
    found = [Attachment(name=m["name"], text=m["text"]) for m in _BLOCK.finditer(text)]
    first = _BLOCK.search(text)
    return (text[: first.start()].strip() if first else text.strip()), found
