"""Chroma, opened once per process: embedded under the data directory (one writer) or a server.

An embedded ``PersistentClient`` is thread-safe but not process-safe: two processes writing one
directory can corrupt it. The process that opens it holds an exclusive lock on
``CHORUS_HOME/chroma.lock`` until it exits; a second one (say ``chorus ingest`` while ``chorus
run`` serves) gets :class:`VectorStoreBusy` with what to do instead. ``CHORUS_CHROMA_URL`` points
every process at a Chroma server, which has no such limit.

Chroma's calls block; :meth:`VectorStore.call` runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from chorus.memory.embeddings import MINILM, LiteLLMEmbedding, MiniLMEmbedding
from chorus.settings import Settings

T = TypeVar("T")
LITELLM_PREFIX = "litellm:"
# Per store directory: the open lock file and how many VectorStores of this process use it.
_PROCESS_LOCKS: dict[Path, list[Any]] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


class VectorStoreError(RuntimeError):
    """Chroma cannot be used; the message says why and what to do."""


class VectorStoreBusy(VectorStoreError):
    """Another process has the embedded Chroma store open."""


def embedder_for(settings: Settings, plugin_embedders: dict[str, Callable[[], Any]] | None = None) -> Any:
    """The Chroma embedding function ``CHORUS_EMBEDDING`` names."""
    name = settings.embedding.strip()
    if name == MINILM:
        return MiniLMEmbedding()
    if name.startswith(LITELLM_PREFIX):
        return LiteLLMEmbedding(model=name[len(LITELLM_PREFIX):], api_base=settings.model_api_base)
    if plugin_embedders and name in plugin_embedders:
        return plugin_embedders[name]()
    known = [MINILM, f"{LITELLM_PREFIX}<model>", *sorted(plugin_embedders or {})]
    raise VectorStoreError(f"unknown CHORUS_EMBEDDING {name!r}; use one of: {', '.join(known)}")


def collection_name(base: str, embedder: str) -> str:
    """Chroma's rules (3-512 of [A-Za-z0-9._-], alphanumeric ends); the embedder is part of the name,
    so switching embedders starts fresh collections instead of mixing vector spaces."""
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in embedder.lower()).strip("-._")
    name = f"{base}-{slug}"
    if len(name) > 60:
        name = f"{base}-{hashlib.sha1(embedder.encode()).hexdigest()[:16]}"
    return name


class VectorStore:
    """One process's Chroma client and collections."""

    def __init__(self, settings: Settings, plugin_embedders: dict[str, Callable[[], Any]] | None = None) -> None:
        self.settings = settings
        self.embedder_name = settings.embedding.strip()
        self._plugin_embedders = plugin_embedders
        self._embedder: Any = None
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._lock_path: Path | None = None

    @property
    def location(self) -> str:
        return self.settings.chroma_url or str(self.path)

    @property
    def path(self) -> Path:
        return self.settings.home.expanduser() / "chroma"

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = embedder_for(self.settings, self._plugin_embedders)
        return self._embedder

    def client(self) -> Any:
        """The Chroma client, opened on first use (blocking)."""
        with self._lock:
            if self._client is None:
                self._client = self._open()
            return self._client

    def _open(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        url = self.settings.chroma_url
        if url:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            try:
                client = chromadb.HttpClient(host=parts.hostname or "localhost", port=parts.port or 8000,
                                             ssl=parts.scheme == "https", settings=chroma_settings)
                client.heartbeat()
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
                raise VectorStoreError(f"cannot reach the Chroma server at {url} ({detail})") from exc
            return client
        self._take_lock()
        self.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(self.path), settings=chroma_settings)

    def _take_lock(self) -> None:
        """Hold the store's lock for this process (shared by every VectorStore of the process)."""
        import fcntl

        lock_path = (self.path.parent / "chroma.lock").resolve()
        with _PROCESS_LOCKS_GUARD:
            held = _PROCESS_LOCKS.get(lock_path)
            if held is not None:
                held[1] += 1
                self._lock_path = lock_path
                return
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115  (held while the store is open)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise VectorStoreBusy(
                    f"the memory and knowledge store in {self.path} is open in {holder}. Chroma's embedded "
                    "store allows one process: stop it first, or run a Chroma server and set CHORUS_CHROMA_URL."
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"Chorus process {os.getpid()}\n")
            handle.flush()
            _PROCESS_LOCKS[lock_path] = [handle, 1]
            self._lock_path = lock_path

    def collection(self, base: str) -> Any:
        """The collection ``base`` for this embedder, created on first use (blocking)."""
        name = collection_name(base, self.embedder_name)
        found = self._collections.get(name)
        if found is None:
            found = self.client().get_or_create_collection(
                name, embedding_function=self.embedder, configuration={"hnsw": {"space": "cosine"}},
            )
            self._collections[name] = found
        return found

    def forget_collection(self, base: str) -> None:
        """Drop ``base``'s collection (blocking); a later use creates it empty."""
        name = collection_name(base, self.embedder_name)
        self._collections.pop(name, None)
        try:
            self.client().delete_collection(name)
        except Exception as exc:
            if "does not exist" not in str(exc).lower():
                raise

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking Chroma or embedding call in a worker thread."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._collections.clear()
            self._client = None
            if self._lock_path is None:
                return
            with _PROCESS_LOCKS_GUARD:
                held = _PROCESS_LOCKS.get(self._lock_path)
                if held is not None:
                    held[1] -= 1
                    if held[1] <= 0:
                        held[0].close()  # releases the lock
                        del _PROCESS_LOCKS[self._lock_path]
            self._lock_path = None
