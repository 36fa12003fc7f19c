"""The built-in ``librarian``: answers from the knowledge base, citing its sources.

The knowledge base holds what ``chorus ingest`` read (and, on first start, ``knowledge/``).
Registered through the same hooks as any third-party plugin; listed in
:data:`chorus.plugins.DEFAULT_PLUGINS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chorus.plugins import AgentSpec, ToolContext, ToolSpec, hookimpl

_KEYWORDS = (
    "policy", "policies", "refund", "return", "returns", "shipping", "delivery", "exchange", "warranty",
    "guarantee", "gift card", "faq", "opening hours", "store hours", "payment", "privacy", "cancel",
    "knowledge base", "documents", "according to", "user guide", "manual",
)


async def search_knowledge(query: str, context: ToolContext) -> str:
    """Search the knowledge base (store policies, FAQ, the Chorus user guide and every document
    ingested with `chorus ingest`). Returns numbered snippets with their sources; cite them as [1]."""
    if context.knowledge is None:
        return "The knowledge base is switched off on this server (CHORUS_MEMORY=false)."
    from chorus.memory.knowledge import cite

    return cite(await context.knowledge.search(query))


def _search_args(text: str) -> Mapping[str, Any] | None:
    """Search for what the user asked when it names something the knowledge base covers."""
    from chorus.memory.knowledge import mentions_known_terms

    low = text.lower()
    if any(k in low for k in _KEYWORDS) or mentions_known_terms(text):
        return {"query": text.strip()}
    return None


@hookimpl
def chorus_register_tools() -> list[ToolSpec]:
    return [
        ToolSpec(
            func=search_knowledge,
            keywords=_KEYWORDS,
            offline_args=_search_args,
            examples=("How long do refunds take?",),
        )
    ]


@hookimpl
def chorus_register_agents() -> list[AgentSpec]:
    return [
        AgentSpec(
            name="librarian",
            description=(
                "Answers from the knowledge base (store policies, FAQ, the Chorus user guide and other "
                "ingested documents) and cites the source of every answer."
            ),
            system_message=(
                "You answer questions from the knowledge base. Always call `search_knowledge` first, "
                "answer only from what it returns, and cite each fact's source as [1], [2] with the "
                "file name. If nothing relevant comes back, say the knowledge base does not cover it."
            ),
            tools=("search_knowledge",),
            keywords=_KEYWORDS,
            examples=("How long do refunds take?",),
        )
    ]
