"""Per-user memory: facts and preferences the team keeps about one user, across conversations.

Each user has a Chroma collection of their own, named from a hash of their user id, and a
:class:`UserMemory` is bound to one user id by Chorus (never chosen by a model or a prompt),
so one user's turns cannot reach another user's memories whatever they type.

:class:`RecallMemory` plugs a user's memory into AutoGen's ``Memory`` protocol: before each
model call, the memories closest to the user's latest message are added to the agent's context.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from autogen_core import CancellationToken
from autogen_core.memory import Memory, MemoryContent, MemoryMimeType, MemoryQueryResult, UpdateContextResult
from autogen_core.model_context import ChatCompletionContext
from autogen_core.models import SystemMessage, UserMessage

from chorus.memory.store import VectorStore
from chorus.plugins._memory_api import MemoryItem
from chorus.prompts import MEMORY_HEADER

log = logging.getLogger(__name__)

HUMAN = "user"  # the source of the human's messages in a team (chorus.turn.USER)
RECALL_K = 5
RECALL_MIN_SCORE = 0.45
"""A memory this close to the user's message is recalled for any message ("tell me about Miles
Davis" next to "My favourite artist is Miles Davis": 0.6)."""
PERSONAL_MIN_SCORE = 0.2
"""...and this close for a message about the user ("recommend something for me", "where do I
live?"), where what they told earlier may matter although the words differ. A question about
something else ("What time is it in Tokyo?" -0.2, "What albums does AC/DC have?" 0.3) recalls
nothing."""
_ABOUT_ME = re.compile(
    r"\b(?:about me|about myself|know about|remember about|do you remember|what do you (?:know|remember)|"
    r"who am i|my (?:memories|preferences|profile))\b", re.I)
"""A message that asks what the team knows about the user: every memory (up to k) answers it."""
_PERSONAL = re.compile(r"\b(?:i|i'm|im|i'd|i've|i'll|me|my|mine|myself|recommend\w*|suggest\w*)\b", re.I)
SAME_FACT = 0.93  # a new memory this close to an old one replaces it ("I love jazz" twice)
MAX_FACT_CHARS = 500


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _collection_base(user_id: str) -> str:
    return "memory-" + hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:24]


class UserMemory:
    """One user's memories. Blocking ``*_sync`` methods; async ones run them in a worker thread."""

    def __init__(self, store: VectorStore, user_id: str) -> None:
        self.store = store
        self.user_id = user_id
        self.version = 0  # changes whenever a memory is added or forgotten (RecallMemory's cache key)

    def _collection(self) -> Any:
        return self.store.collection(_collection_base(self.user_id))

    def remember_sync(self, fact: str) -> MemoryItem:
        fact = " ".join(fact.split())[:MAX_FACT_CHARS]
        if not fact:
            raise ValueError("nothing to remember")
        collection = self._collection()
        for old in self._query(collection, fact, 1):
            if old.score is not None and old.score >= SAME_FACT:
                collection.delete(ids=[old.id])
        self.version += 1
        item = MemoryItem(id=uuid.uuid4().hex, text=fact, created_at=datetime.now(UTC).isoformat(timespec="seconds"))
        collection.add(ids=[item.id], documents=[fact],
                       metadatas=[{"user": self.user_id, "created_at": item.created_at, "at": time.time()}])
        return item

    def recall_sync(self, query: str, k: int = RECALL_K, min_score: float | None = None) -> list[MemoryItem]:
        """The memories relevant to ``query``, closest first, at most ``k``.

        "What do you know about me?" resembles none of them, yet wants them all (the ``k``
        closest). Otherwise a memory must be close to the message (``min_score``, by default
        :data:`RECALL_MIN_SCORE`, or :data:`PERSONAL_MIN_SCORE` for a message about the user), so
        an unrelated question recalls nothing.
        """
        if not query.strip():
            return []
        collection = self._collection()
        found = self._query(collection, query, k)
        if _ABOUT_ME.search(query):
            return found
        if min_score is None:
            min_score = PERSONAL_MIN_SCORE if _PERSONAL.search(query) else RECALL_MIN_SCORE
        return [m for m in found if (m.score or 0) >= min_score]

    def _query(self, collection: Any, text: str, k: int, count: int | None = None) -> list[MemoryItem]:
        count = collection.count() if count is None else count
        if count == 0:
            return []
        found = collection.query(query_texts=[text], n_results=min(k, count),
                                 include=["documents", "metadatas", "distances"])
        return [
            MemoryItem(id=i, text=doc, created_at=str(meta.get("created_at", "")), score=round(1 - float(d), 4))
            for i, doc, meta, d in zip(found["ids"][0], found["documents"][0], found["metadatas"][0],
                                       found["distances"][0], strict=True)
        ]

    def list_sync(self) -> list[MemoryItem]:
        got = self._collection().get(include=["documents", "metadatas"])
        items = [MemoryItem(id=i, text=doc, created_at=str(meta.get("created_at", "")))
                 for i, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)]
        return sorted(items, key=lambda m: m.created_at)

    def forget_sync(self, memory_id: str) -> bool:
        collection = self._collection()
        if not collection.get(ids=[memory_id])["ids"]:
            return False
        collection.delete(ids=[memory_id])
        self.version += 1
        return True

    def forget_all_sync(self) -> int:
        count = int(self._collection().count())
        self.store.forget_collection(_collection_base(self.user_id))
        self.version += 1
        return count

    async def remember(self, fact: str) -> MemoryItem:
        return await self.store.call(self.remember_sync, fact)

    async def recall(self, query: str, k: int = RECALL_K) -> list[MemoryItem]:
        return await self.store.call(self.recall_sync, query, k)

    async def list(self) -> list[MemoryItem]:
        return await self.store.call(self.list_sync)

    async def forget(self, memory_id: str) -> bool:
        return await self.store.call(self.forget_sync, memory_id)

    async def forget_all(self) -> int:
        return await self.store.call(self.forget_all_sync)


class RecallMemory(Memory):
    """AutoGen ``Memory`` over one user's memories: recalls what fits the latest user message."""

    def __init__(self, memory: UserMemory) -> None:
        self.memory = memory
        # Every model call of a turn asks with the same user message: embed and search once.
        self._last: tuple[str, int, list[MemoryItem]] | None = None

    async def update_context(self, model_context: ChatCompletionContext) -> UpdateContextResult:
        messages = await model_context.get_messages()
        # The human's latest message (teammates' messages reach an agent as UserMessages too).
        query = next((m.content for m in reversed(messages) if isinstance(m, UserMessage)
                      and m.source == HUMAN and isinstance(m.content, str)), "")
        try:
            if self._last is not None and self._last[:2] == (query, self.memory.version):
                recalled = self._last[2]
            else:
                recalled = await self.memory.recall(query) if query else []
                self._last = (query, self.memory.version, recalled)
        except Exception as exc:  # memory is a help, never a reason for the turn to fail
            _warn_once(f"memories could not be recalled ({type(exc).__name__}: {exc}); answering without them")
            recalled = []
        if recalled:
            lines = "\n".join(f"- {m.text}" for m in recalled)
            note = SystemMessage(content=f"{MEMORY_HEADER}\n{lines}")
            if note not in messages:  # the context keeps it: once is enough
                await model_context.add_message(note)
        return UpdateContextResult(memories=MemoryQueryResult(results=[
            MemoryContent(content=m.text, mime_type=MemoryMimeType.TEXT, metadata={"score": m.score or 0.0})
            for m in recalled
        ]))

    async def query(self, query: str | MemoryContent, cancellation_token: CancellationToken | None = None,
                    **kwargs: Any) -> MemoryQueryResult:
        text = query if isinstance(query, str) else str(query.content)
        return MemoryQueryResult(results=[MemoryContent(content=m.text, mime_type=MemoryMimeType.TEXT)
                                          for m in await self.memory.recall(text)])

    async def add(self, content: MemoryContent, cancellation_token: CancellationToken | None = None) -> None:
        await self.memory.remember(str(content.content))

    async def clear(self) -> None:
        await self.memory.forget_all()

    async def close(self) -> None:
        return None
