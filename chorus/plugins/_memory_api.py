"""What a tool sees of the user's memory and of the knowledge base, through its ``ToolContext``.

The plugin API types them as protocols, so it depends on no implementation:
:class:`chorus.memory.user.UserMemory` and :class:`chorus.memory.knowledge.KnowledgeBase` are the
ones Chorus hands to tools, and a test may hand its own. The items they return are plain data.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class MemoryItem:
    """One thing remembered about a user; ``score`` is its closeness when recalled for a message."""

    id: str
    text: str
    created_at: str
    score: float | None = None


@dataclass(frozen=True)
class Hit:
    """One passage of the knowledge base found for a question, and where it came from."""

    source: str
    title: str
    heading: str
    text: str
    score: float

    @property
    def where(self) -> str:
        return f"{self.source} › {self.heading}" if self.heading and self.heading != self.title else self.source

    def snippet(self, limit: int = 300) -> str:
        flat = " ".join(self.text.split())
        return flat if len(flat) <= limit else flat[: limit - 1].rsplit(" ", 1)[0] + "…"


class UserMemory(Protocol):
    """The user's own memory (``ToolContext.memory``): a tool can never reach another user's."""

    async def remember(self, fact: str) -> MemoryItem: ...

    async def recall(self, query: str, k: int = ...) -> builtins.list[MemoryItem]: ...

    async def list(self) -> builtins.list[MemoryItem]: ...

    async def forget(self, memory_id: str) -> bool: ...

    async def forget_all(self) -> int: ...


class KnowledgeBase(Protocol):
    """The knowledge base (``ToolContext.knowledge``): what ``chorus ingest`` read."""

    async def search(self, query: str, k: int = ...) -> list[Hit]: ...
