"""Files attached in a conversation, searchable in its later turns, by that conversation only.

The turn that carries a file hands its text to the team; :meth:`ConversationFiles.add` also cuts
it into passages (as the knowledge base does) so that later turns can search it: "what does the
file I attached say about refunds?" is answered from the file, not the knowledge base.

Who can find a file:

- a *kept* conversation (a signed-in user with history on) keeps its files' passages in Chroma,
  in a collection of that user's own (named from a hash of the user id, like their memories),
  each passage stamped with the thread id. A search asks that user's collection for that thread
  only, so another user holding the thread id finds nothing, and so does the same user in another
  conversation. They are found again after a restart; :func:`forget_conversation_sync`
  (``MemoryService.forget_conversation_files``) deletes them when the conversation is deleted,
  :func:`forget_user_sync` when the account is removed;
- any other conversation (no logins: every visitor is "anonymous" and picks their own thread id;
  ``chorus ask``) keeps them in this process's memory, with the conversation's own session
  (:func:`conversation_files` keys on its :class:`~chorus.plugins.ToolContext` object, not on
  ids a client could repeat), gone when the session is.

Users and threads come from the ToolContext Chorus binds, never from a model. Embedding and Chroma
calls run in worker threads; indexing runs in the background, and a search waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chorus.text import clean_text

if TYPE_CHECKING:  # Chroma's modules load in the worker threads, not on the event loop
    from chorus.attachments import Attachment
    from chorus.memory.store import VectorStore
    from chorus.plugins import ToolContext

log = logging.getLogger(__name__)

SEARCH_K = 3
MAX_LIVE_CHUNKS = 2_000  # per conversation kept in memory (about 2 MB of text): the oldest go first
_MARKDOWN = (".md", ".markdown")


@dataclass(frozen=True)
class FileHit:
    """One passage of an attached file."""

    name: str
    heading: str
    text: str
    score: float

    @property
    def where(self) -> str:
        return f"{self.name} › {self.heading}" if self.heading else self.name


@dataclass
class _Passage:
    id: str
    name: str
    heading: str
    text: str
    vector: Any = None  # numpy vector when the conversation has an embedder


def _collection_base(user_id: str) -> str:
    return "files-" + hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:24]


def _file_key(thread_id: str, name: str) -> str:
    return hashlib.sha1(f"{thread_id}\x00{name}".encode()).hexdigest()


def passages(name: str, text: str) -> list[tuple[str, str]]:
    """(heading, text) passages of one attached file: Markdown by its headings, the rest by paragraphs."""
    from chorus.memory.knowledge import Section, chunk_sections, markdown_sections

    if name.lower().endswith(_MARKDOWN):
        _title, sections = markdown_sections(text)
    else:
        sections = [Section("", text)] if text.strip() else []
    return [(c.heading, c.text) for c in chunk_sections(sections)]


def _document(name: str, heading: str, text: str) -> str:
    """What is embedded: the file name and heading with the passage (found by either)."""
    return f"{name} › {heading}\n\n{text}" if heading else f"{name}\n\n{text}"


class ConversationFiles:
    """The files attached in one conversation (see the module's docstring for who finds them)."""

    def __init__(self, user_id: str, thread_id: str, store: VectorStore | None) -> None:
        from chorus.memory._owners import ANONYMOUS

        self.user_id = user_id
        self.thread_id = thread_id
        self.store = store
        self.named = user_id.strip() not in ANONYMOUS
        self._live: dict[str, list[_Passage]] = {}  # by file name (a newer file of the same name replaces it)
        self._lock = threading.Lock()  # the live passages, between worker threads
        self._order = asyncio.Lock()  # files are indexed in the order they were sent
        self._pending: set[asyncio.Task[None]] = set()

    # -- adding -----------------------------------------------------------------------------------

    def add(self, attachments: Sequence[Attachment], *, keep: bool) -> None:
        """Index ``attachments`` in the background (a search waits for it). ``keep``: the conversation
        is stored, so its files are kept with it (signed-in users only)."""
        files = [(a.name, a.text) for a in attachments if a.text.strip()]
        if not files:
            return
        keep = keep and self.named and self.store is not None
        task = asyncio.get_running_loop().create_task(self._index(files, keep))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _index(self, files: list[tuple[str, str]], keep: bool) -> None:
        async with self._order:
            for name, text in files:
                try:
                    await asyncio.to_thread(self._index_sync, name, text, keep)
                except Exception as exc:  # the file was still read this turn; only later searches miss it
                    log.warning("could not index the attached file %r of thread %s: %s", name, self.thread_id, exc)

    def _index_sync(self, name: str, text: str, keep: bool) -> None:
        text = clean_text(text)
        parts = passages(name, text)
        if not parts:
            return
        key = _file_key(self.thread_id, name)
        documents = [_document(name, heading, body) for heading, body in parts]
        if keep:
            try:
                self._keep_sync(name, key, text, parts, documents)
                with self._lock:
                    self._live.pop(name, None)
                return
            except Exception as exc:  # the store is down: this session still finds it
                log.warning("could not keep the attached file %r of thread %s (%s); it is searchable in "
                            "this session only", name, self.thread_id, exc)
        vectors: list[Any] = [None] * len(parts)
        if self.store is not None:
            try:
                vectors = list(self.store.embedder(documents))
            except Exception as exc:
                log.warning("could not embed the attached file %r (%s); searching it by words", name, exc)
        found = [_Passage(f"{key}:{n}", name, heading, body, vector)
                 for n, ((heading, body), vector) in enumerate(zip(parts, vectors, strict=True))]
        with self._lock:
            self._live.pop(name, None)
            self._live[name] = found
            total = sum(len(p) for p in self._live.values())
            while total > MAX_LIVE_CHUNKS and len(self._live) > 1:
                oldest = next(iter(self._live))
                total -= len(self._live.pop(oldest))

    def _keep_sync(self, name: str, key: str, text: str, parts: list[tuple[str, str]], documents: list[str]) -> None:
        assert self.store is not None
        collection = self.store.collection(_collection_base(self.user_id))
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        same = {"$and": [{"thread": self.thread_id}, {"name": name}]}
        existing = collection.get(where=same, include=["metadatas"], limit=1)
        if existing["ids"]:
            if (existing["metadatas"] or [{}])[0].get("sha256") == digest:
                return  # sent again (an edited message): nothing new
            collection.delete(where=same)
        now = time.time()
        for start in range(0, len(parts), 128):
            batch = range(start, min(start + 128, len(parts)))
            collection.add(
                ids=[f"{key}:{n}" for n in batch],
                documents=[documents[n] for n in batch],
                metadatas=[{"thread": self.thread_id, "name": name, "heading": parts[n][0], "chunk": n,
                            "sha256": digest, "at": now} for n in batch],
            )

    async def ready(self) -> None:
        """Wait until every file sent so far is indexed."""
        while self._pending:
            await asyncio.wait(set(self._pending))

    # -- searching --------------------------------------------------------------------------------

    async def search(self, query: str, k: int = SEARCH_K) -> list[FileHit]:
        """The passages of this conversation's files that best match ``query``, best first."""
        await self.ready()
        return await asyncio.to_thread(self.search_sync, query, k)

    async def names(self) -> list[str]:
        """The names of this conversation's files."""
        await self.ready()
        return await asyncio.to_thread(self.names_sync)

    def search_sync(self, query: str, k: int = SEARCH_K) -> list[FileHit]:
        wanted = topic_words(query)
        with self._lock:
            live = [p for found in self._live.values() for p in found]
        hits: list[FileHit] = []
        if live:
            vector = None
            if self.store is not None and all(p.vector is not None for p in live):
                vector = self.store.embedder([query])[0]
            for passage in live:
                semantic = _cosine(vector, passage.vector) if vector is not None else 0.0
                hits.append(FileHit(passage.name, passage.heading, passage.text,
                                    round(semantic + _lexical(wanted, passage.text), 4)))
        collection = self._kept_collection()
        if collection is not None:
            found = collection.query(query_texts=[query], n_results=max(k * 3, 8), where={"thread": self.thread_id},
                                     include=["documents", "metadatas", "distances"])
            for doc, meta, distance in zip(found["documents"][0], found["metadatas"][0], found["distances"][0],
                                           strict=True):
                text = doc.split("\n\n", 1)[1] if "\n\n" in doc else doc
                hits.append(FileHit(str(meta.get("name", "")), str(meta.get("heading", "")), text,
                                    round(1.0 - float(distance) + _lexical(wanted, text), 4)))
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def names_sync(self) -> list[str]:
        with self._lock:
            names = list(self._live)
        collection = self._kept_collection()
        if collection is not None:
            got = collection.get(where={"thread": self.thread_id}, include=["metadatas"])
            names += [str(m.get("name", "")) for m in got["metadatas"] or [] if m.get("name") not in names]
        return list(dict.fromkeys(names))

    def _kept_collection(self) -> Any:
        """This user's collection of kept files, if they have one (a search creates none); None when
        the store cannot be reached (logged: this session's own files are still searched)."""
        if not self.named or self.store is None:
            return None
        try:
            return _existing(self.store, _collection_base(self.user_id))
        except Exception as exc:
            log.warning("the kept files of thread %s cannot be searched: %s", self.thread_id, exc)
            return None


def _existing(store: VectorStore, base: str) -> Any:
    from chorus.memory.store import collection_name

    name = collection_name(base, store.embedder_name)
    try:
        store.client().get_collection(name)
    except Exception as exc:  # chromadb raises NotFoundError (ValueError before 1.0)
        if "does not exist" in str(exc).lower() or type(exc).__name__ == "NotFoundError":
            return None
        raise
    return store.collection(base)


def _cosine(a: Any, b: Any) -> float:
    import numpy as np

    x, y = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / norm if norm else 0.0


def _lexical(wanted: set[str], text: str) -> float:
    """A small bonus for the question's own words in a passage (exact terms, names, numbers)."""
    if not wanted:
        return 0.0
    return 0.2 * len(wanted & words(text)) / math.sqrt(len(wanted))


# -- deleting -------------------------------------------------------------------------------------


def forget_conversation_sync(store: VectorStore, user_id: str, thread_id: str) -> int:
    """Delete the kept files of ``user_id``'s conversation ``thread_id``; how many passages went."""
    collection = _existing(store, _collection_base(user_id))
    if collection is None:
        return 0
    gone = len(collection.get(where={"thread": thread_id}, include=[])["ids"])
    if gone:
        collection.delete(where={"thread": thread_id})
    return gone


def forget_user_sync(store: VectorStore, user_id: str) -> int:
    """Delete every kept file of ``user_id`` (a removed account); how many passages went."""
    collection = _existing(store, _collection_base(user_id))
    if collection is None:
        return 0
    count = int(collection.count())
    store.forget_collection(_collection_base(user_id))
    return count


# -- the conversation's own files -----------------------------------------------------------------

_open: dict[int, ConversationFiles] = {}


def conversation_files(context: ToolContext) -> ConversationFiles:
    """The files of the conversation ``context`` belongs to (Chorus binds it: a model cannot pick one).

    Keyed on the context object, which lives as long as the conversation's session, and forgotten
    with it; a session that resumes a kept conversation finds its kept files by user and thread.
    """
    key = id(context)
    found = _open.get(key)
    if found is None:
        # Chorus's knowledge base lives in the same vector store as the files (a test's may not).
        store = getattr(context.knowledge, "store", None)
        found = _open[key] = ConversationFiles(context.user_id, context.thread_id, store)
        weakref.finalize(context, _open.pop, key, None)
    return found


# -- quoting --------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOPWORDS = frozenset(
    "a an the and or but of to in on at for from by with about as is are was were be been am do does did "
    "i me my you your we our it its this that these those what which who whom how can could would should "
    "will shall may might please tell show give get let us some any there here just like want need know "
    "have has had not no yes if then than so very much many more most also too into out up down over "
    "one where when why".split()
)
# Words that point at the file rather than at what is asked about it.
_POINTERS = frozenset(
    "file attach attached attachment document doc docs upload uploaded sent send shared share gave "
    "say said mention mentioned according earlier before above wrote written write pdf content contain "
    "read".split()
)


def words(text: str) -> set[str]:
    """Lower-case content words of ``text``, with a light plural stem."""
    found = set()
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.add(word)
    return found


def topic_words(query: str) -> set[str]:
    """What the question asks about, without the words that only point at the file."""
    return words(query) - _POINTERS


def quote(hits: Iterable[FileHit], query: str, *, most: int = 6) -> str:
    """Hits as the file search tool returns them, each quote with its file: the lines that share the
    question's words; for a question with none of its words in them, the closest passage, said so."""
    hits = list(hits)
    if not hits:
        return "Nothing in the files attached in this conversation matches that."
    wanted = topic_words(query)
    lines: list[tuple[int, int, str, str]] = []
    for rank, hit in enumerate(hits):
        for line in hit.text.splitlines():
            shared = len(wanted & words(line))
            if shared and line.strip():
                lines.append((shared, -rank, line.strip(), hit.where))
    lines.sort(key=lambda item: (item[0], item[1]), reverse=True)
    names = list(dict.fromkeys(h.name for h in hits))
    files = (f"{names[0]} (attached in this conversation)" if len(names) == 1
             else "the files attached in this conversation")
    if lines:
        quoted = "\n\n".join(_quoted(line, where) for _s, _r, line, where in lines[:most])
        verb = "says" if len(names) == 1 else "say"
        return f"Here is what {files} {verb} about that:\n\n{quoted}"
    if not wanted:  # "what does my file say?": its best passages
        quoted = "\n\n".join(_quoted(hit.text, hit.where) for hit in hits)
        return f"Here is what {files} {'says' if len(names) == 1 else 'say'}:\n\n{quoted}"
    return (f"Those words do not appear in {files}; the closest passage is:\n\n"
            f"{_quoted(hits[0].text, hits[0].where)}")


def _quoted(text: str, where: str, limit: int = 400) -> str:
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rsplit(" ", 1)[0] + "…"
    return f"> {flat}\n> — _{where}_"
