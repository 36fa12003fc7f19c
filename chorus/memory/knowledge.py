"""The knowledge base: documents cut into chunks, embedded into Chroma, searched by agents.

``chorus ingest PATH...`` (and the first start, with ``knowledge/``) reads Markdown, text, HTML
and PDF files. Each file's chunks are keyed by its path and stamped with its content hash, so
ingesting an unchanged file again adds nothing and a changed file replaces its chunks.
Chunks follow the document's headings and paragraphs (about :data:`CHUNK_CHARS` characters),
and each remembers its source file and heading so answers can cite them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chorus.memory.store import VectorStore
from chorus.plugins._memory_api import Hit

COLLECTION = "knowledge"
CHUNK_CHARS = 900
SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text", ".rst": "text",
            ".html": "html", ".htm": "html", ".pdf": "pdf"}
MIN_SCORE = 0.25
_ADD_BATCH = 128


class IngestError(ValueError):
    """A file that cannot be ingested; the message names it."""


@dataclass(frozen=True)
class Section:
    heading: str
    text: str


@dataclass(frozen=True)
class Chunk:
    text: str
    heading: str


@dataclass
class IngestReport:
    """What ``ingest`` did, file by file."""

    added: list[tuple[str, int]] = field(default_factory=list)  # (source, chunks)
    replaced: list[tuple[str, int]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def chunks(self) -> int:
        return sum(n for _s, n in self.added + self.replaced)

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.replaced)} updated", f"{len(self.unchanged)} unchanged"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return f"{', '.join(parts)}; {self.chunks} chunks written"


# -- reading ------------------------------------------------------------------------------------


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def markdown_sections(text: str) -> tuple[str, list[Section]]:
    """(title, sections) of Markdown: each section under its heading path ("A › B")."""
    title = ""
    path: list[tuple[int, str]] = []
    sections: list[Section] = []
    lines: list[str] = []
    fence = False

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(" › ".join(h for _l, h in path), body))
        lines.clear()

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        match = None if fence else _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        flush()
        level, heading = len(match.group(1)), match.group(2).strip()
        if level == 1 and not title:
            title = heading
        path = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
    flush()
    return title, sections


def html_to_markdown(html: str) -> str:
    """Visible text of an HTML page, headings kept as Markdown headings."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "nav", "footer"]):
        tag.decompose()
    for level in range(1, 7):
        for tag in soup.find_all(f"h{level}"):
            tag.replace_with(f"\n\n{'#' * level} {tag.get_text(' ', strip=True)}\n\n")
    for tag in soup.find_all(["p", "li", "br", "div", "tr", "section", "article"]):
        tag.insert_after("\n\n" if tag.name != "br" else "\n")
    title_tag = soup.find("title")
    text = soup.get_text()
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    if title_tag and title_tag.get_text(strip=True) and not text.startswith("# "):
        text = f"# {title_tag.get_text(strip=True)}\n\n{text}"
    return text


def read_document(path: Path) -> tuple[str, list[Section]]:
    """(title, sections) of a file, by its suffix. Raises IngestError."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise IngestError(f"{path}: unsupported file type {path.suffix or '(none)'}; use {', '.join(sorted(SUFFIXES))}")
    try:
        if kind == "pdf":
            return _pdf_sections(path)
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: {exc.strerror or exc}") from exc
    if b"\x00" in raw[:4096]:
        raise IngestError(f"{path}: not a text file")
    text = raw.decode("utf-8", errors="replace")
    if kind == "html":
        text = html_to_markdown(text)
    if kind in ("markdown", "html"):
        title, sections = markdown_sections(text)
    else:
        title, sections = "", [Section("", text.strip())] if text.strip() else []
    return title or path.stem.replace("-", " ").replace("_", " "), sections


def _pdf_sections(path: Path) -> tuple[str, list[Section]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [(n, page.extract_text() or "") for n, page in enumerate(reader.pages, start=1)]
        title = str(reader.metadata.get("/Title") or "") if reader.metadata else ""
    except (PdfReadError, OSError, ValueError, KeyError) as exc:
        raise IngestError(f"{path}: not a readable PDF ({exc})") from exc
    sections = [Section(f"page {n}", text.strip()) for n, text in pages if text.strip()]
    if not sections:
        raise IngestError(f"{path}: the PDF has no text layer (scanned?)")
    return title or path.stem.replace("-", " ").replace("_", " "), sections


def chunk_sections(sections: Iterable[Section], size: int = CHUNK_CHARS) -> list[Chunk]:
    """Paragraphs packed into chunks of about ``size`` characters, never across a heading;
    an over-long paragraph is split between sentences."""
    chunks: list[Chunk] = []
    for section in sections:
        parts: list[str] = []
        for paragraph in re.split(r"\n\s*\n", section.text):
            paragraph = paragraph.strip()
            if not paragraph:
                continue
            pieces = [paragraph] if len(paragraph) <= size else _split_long(paragraph, size)
            for piece in pieces:
                if parts and sum(len(p) + 2 for p in parts) + len(piece) > size:
                    chunks.append(Chunk("\n\n".join(parts), section.heading))
                    parts = []
                parts.append(piece)
        if parts:
            chunks.append(Chunk("\n\n".join(parts), section.heading))
    return chunks


def _split_long(paragraph: str, size: int) -> list[str]:
    sentences = re.split(r"(?<=[.!?])\s+", paragraph)
    out: list[str] = []
    current = ""
    for sentence in sentences:
        while len(sentence) > size:  # one enormous "sentence": cut it
            if current:
                out.append(current)
                current = ""
            out.append(sentence[:size])
            sentence = sentence[size:]
        if current and len(current) + 1 + len(sentence) > size:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        out.append(current)
    return out


def expand_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files to ingest: the given files, and the supported files under given folders (sorted)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                              and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            yield path


def source_name(path: Path) -> str:
    """How a file is cited: relative to the working directory when inside it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


# -- what the knowledge base is about (for the offline model's routing) ------------------------------

_TERM = re.compile(r"[a-z][a-z'-]{3,}")
_COMMON = frozenset(
    "about also after again being before could does doing each from have here into just like make more most "
    "much only other over page same should some such than that their them then there these they this those "
    "through under until very what when where which while with would your yours chorus guide".split()
)
_known_terms: set[str] = set()


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    return {_stem(t) for t in _TERM.findall(text.lower()) if t not in _COMMON}


SECTION_BONUS = 0.05
"""Added to a passage's score for each word of the question its section's own heading uses (at
most two): "What payment methods do you accept?" finds "Prices and payment" (cosine 0.245 alone,
under :data:`MIN_SCORE`). The document's title (the heading's first part) earns nothing, since
every passage of the document shares it."""


def _section_bonus(query: str, heading: str) -> float:
    section = heading.rsplit("›", 1)[-1] if "›" in heading else ""
    return SECTION_BONUS * min(2, len(_terms(query) & _terms(section))) if section else 0.0


def mentions_known_terms(text: str) -> bool:
    """Whether ``text`` names a title or heading word of an ingested document (no I/O)."""
    return bool(_known_terms & _terms(text))


def _learn_terms(title: str, headings: Iterable[str]) -> None:
    _known_terms.update(_terms(title))
    for heading in headings:
        _known_terms.update(_terms(heading))


# -- the knowledge base ---------------------------------------------------------------------------


class KnowledgeBase:
    """Ingest and search; blocking methods (``*_sync``) run in worker threads from async code."""

    def __init__(self, store: VectorStore, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self._ready = ready  # awaited before a search: the first start's ingestion is done

    def _collection(self) -> Any:
        return self.store.collection(COLLECTION)

    def count_sync(self) -> int:
        return int(self._collection().count())

    def learn_terms_sync(self) -> None:
        """Read the titles and headings of what is stored, for :func:`mentions_known_terms`."""
        collection = self._collection()
        total = collection.count()
        for offset in range(0, total, 5000):
            got = collection.get(include=["metadatas"], limit=5000, offset=offset)
            for meta in got["metadatas"] or []:
                _learn_terms(str(meta.get("title", "")), [str(meta.get("heading", ""))])

    def ingest_file_sync(self, path: Path) -> tuple[str, int]:
        """Ingest one file: ('added' | 'replaced' | 'unchanged', chunks written). Raises IngestError."""
        source = source_name(path)
        key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise IngestError(f"{path}: {exc.strerror or exc}") from exc
        collection = self._collection()
        existing = collection.get(where={"file": key}, include=["metadatas"], limit=1)
        had = bool(existing["ids"])
        if had and (existing["metadatas"] or [{}])[0].get("sha256") == digest:
            return "unchanged", 0
        title, sections = read_document(path)
        chunks = chunk_sections(sections)
        _learn_terms(title, (c.heading for c in chunks))
        if had:
            collection.delete(where={"file": key})
        for start in range(0, len(chunks), _ADD_BATCH):
            batch = chunks[start : start + _ADD_BATCH]
            collection.add(
                ids=[f"{key}:{start + i}" for i in range(len(batch))],
                # The heading goes into the embedded text: "Refunds" under "Returns" is found by both.
                documents=[f"{title} › {c.heading}\n\n{c.text}" if c.heading else f"{title}\n\n{c.text}"
                           for c in batch],
                metadatas=[{"file": key, "source": source, "title": title, "heading": c.heading,
                            "sha256": digest, "chunk": start + i} for i, c in enumerate(batch)],
            )
        return ("replaced" if had else "added"), len(chunks)

    def ingest_sync(self, paths: Iterable[Path], progress: Callable[[Path], None] | None = None) -> IngestReport:
        report = IngestReport()
        for path in expand_paths(paths):
            try:
                outcome, chunks = self.ingest_file_sync(path)
            except IngestError as exc:
                report.failed.append((source_name(path), str(exc)))
            else:
                if outcome == "unchanged":
                    report.unchanged.append(source_name(path))
                else:
                    getattr(report, outcome).append((source_name(path), chunks))
            if progress is not None:
                progress(path)
        return report

    def search_sync(self, query: str, k: int = 4, min_score: float = MIN_SCORE) -> list[Hit]:
        collection = self._collection()
        if not query.strip() or collection.count() == 0:
            return []
        found = collection.query(query_texts=[query], n_results=k, include=["documents", "metadatas", "distances"])
        hits = []
        for doc, meta, distance in zip(found["documents"][0], found["metadatas"][0], found["distances"][0],
                                       strict=True):
            score = 1.0 - float(distance) + _section_bonus(query, str(meta.get("heading", "")))
            if score < min_score:
                continue
            text = doc.split("\n\n", 1)[1] if "\n\n" in doc else doc
            hits.append(Hit(source=str(meta.get("source", "")), title=str(meta.get("title", "")),
                            heading=str(meta.get("heading", "")), text=text, score=round(score, 4)))
        return sorted(hits, key=lambda hit: hit.score, reverse=True)

    async def search(self, query: str, k: int = 4) -> list[Hit]:
        if self._ready is not None:
            await self._ready()
        return await self.store.call(self.search_sync, query, k)


def cite(hits: list[Hit]) -> str:
    """Hits as the knowledge tool returns them: numbered snippets with their sources."""
    if not hits:
        return "Nothing in the knowledge base matches that."
    lines = []
    for n, hit in enumerate(hits, start=1):
        lines.append(f"[{n}] {hit.snippet(600)}\n(source: {hit.where})")
    return "\n\n".join(lines)
