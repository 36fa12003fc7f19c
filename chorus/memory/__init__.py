"""Memory and knowledge with Chroma: offline embeddings, per-user memory, a knowledge base.

:class:`MemoryService` is what a process opens once (``Chorus.load`` makes it); nothing here
touches Chroma or loads the embedding model until first use, so start-up and the CLI stay fast.

- ``embeddings``: all-MiniLM-L6-v2 in numpy (offline default) and litellm embeddings;
- ``store``: the Chroma client, embedded with a single-writer lock, or a server;
- ``knowledge``: ``chorus ingest`` and search, with sources;
- ``user``: each user's memories, and the AutoGen ``Memory`` that recalls them;
- ``files``: the files attached in a conversation, searchable in its later turns only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chorus.memory._owners import ANONYMOUS
from chorus.settings import Settings

if TYPE_CHECKING:
    from chorus.memory.knowledge import KnowledgeBase
    from chorus.memory.store import VectorStore
    from chorus.memory.user import UserMemory

log = logging.getLogger(__name__)



class MemoryService:
    """The process's vector store, knowledge base and per-user memories."""

    def __init__(self, settings: Settings, embedders: dict[str, Callable[[], Any]] | None = None) -> None:
        self.settings = settings
        self._embedders = embedders or {}
        self._store: VectorStore | None = None
        self._knowledge: KnowledgeBase | None = None
        self.problem: str | None = None
        """Why memory and knowledge are unavailable (the store could not be opened), else None."""
        self._preparing = False
        self._prepared = threading.Event()
        self._lock = threading.RLock()

    @property
    def store(self) -> VectorStore:
        with self._lock:  # made from the preparing thread and the event loop alike: once
            if self._store is None:
                from chorus.memory.store import VectorStore

                self._store = VectorStore(self.settings, self._embedders)
            return self._store

    @property
    def knowledge(self) -> KnowledgeBase:
        store = self.store
        with self._lock:
            if self._knowledge is None:
                from chorus.memory.knowledge import KnowledgeBase

                self._knowledge = KnowledgeBase(store, ready=self._until_prepared)
            return self._knowledge

    def start_preparing(self) -> None:
        """Run :meth:`prepare_sync` in a background thread (the server does this at start-up);
        searches wait for it (without holding a worker thread) until it is done."""
        self._preparing = True
        threading.Thread(target=self.prepare_sync, name="chorus-memory", daemon=True).start()

    @property
    def available(self) -> bool:
        return self.problem is None

    def for_user(self, user_id: str) -> UserMemory | None:
        """``user_id``'s memory; None for anonymous visitors, whose memories would be everyone's."""
        if user_id.strip() in ANONYMOUS or not self.available:
            return None
        from chorus.memory.user import UserMemory

        return UserMemory(self.store, user_id)

    def prepare_sync(self) -> None:
        """Open the store and warm up what the first turn would otherwise wait for: ingest
        ``CHORUS_KNOWLEDGE_DIR`` when the knowledge base is empty (first start), read what it
        covers, load the embedding model. Blocking: the server runs it in a thread at start-up.

        A store that cannot be opened (another process holds it, the server is down) turns
        memory and knowledge off for this process, with :attr:`problem` saying why.
        """
        from chorus.memory.store import VectorStoreError

        self._preparing = True
        try:
            self._prepare()
        except VectorStoreError as exc:
            self.problem = str(exc)
            log.error("memory and knowledge are off: %s", exc)
        except Exception:
            log.exception("preparing memory and knowledge failed")
        finally:
            self._prepared.set()

    async def _until_prepared(self) -> None:
        """A search that comes while the first start still ingests ``knowledge/`` waits for it,
        polling on the event loop rather than parking a worker thread."""
        import asyncio

        for _ in range(3000):  # at most 5 minutes
            if not self._preparing or self._prepared.is_set():
                return
            await asyncio.sleep(0.1)

    def _prepare(self) -> None:
        if not self.ingest_default_knowledge_sync():
            self.knowledge.learn_terms_sync()
        self.store.embedder(["warm up"])

    def ingest_default_knowledge_sync(self) -> bool:
        """Ingest ``CHORUS_KNOWLEDGE_DIR`` if the knowledge base is empty (blocking); whether it did.
        Raises VectorStoreError when the store cannot be opened."""
        folder = self.settings.knowledge_dir
        if not folder.is_dir() or self.knowledge.count_sync() > 0:
            return False
        report = self.knowledge.ingest_sync([folder])
        log.info("knowledge base: ingested %s: %s", folder, report.summary())
        for source, error in report.failed:
            log.warning("knowledge base: %s was skipped: %s", source, error)
        return True

    def forget_conversation_files_sync(self, user_id: str, thread_id: str) -> int:
        """Delete the files kept with ``user_id``'s conversation ``thread_id`` (it was deleted);
        how many passages went. Blocking."""
        if not self.available:
            return 0
        from chorus.memory.files import forget_conversation_sync

        return forget_conversation_sync(self.store, user_id, thread_id)

    async def forget_conversation_files(self, user_id: str, thread_id: str) -> int:
        """:meth:`forget_conversation_files_sync` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.forget_conversation_files_sync, user_id, thread_id)

    def forget_user_files_sync(self, user_id: str) -> int:
        """Delete every file kept with ``user_id``'s conversations (a removed account). Blocking."""
        if not self.available:
            return 0
        from chorus.memory.files import forget_user_sync

        return forget_user_sync(self.store, user_id)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
