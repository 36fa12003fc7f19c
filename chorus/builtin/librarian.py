"""The built-in ``librarian``: answers from the knowledge base, citing its sources, and from the
files the user attached earlier in the conversation, naming them.

The knowledge base holds what ``chorus ingest`` read (and, on first start, ``knowledge/``).
Attached files are searched in their own conversation only (:mod:`chorus.memory.files`).
Registered through the same hooks as any third-party plugin; listed in
:data:`chorus.plugins.DEFAULT_PLUGINS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chorus.plugins import AgentSpec, ToolContext, ToolSpec, hookimpl

# What customers ask a shop's support desk about, in the words they use.
_KEYWORDS = (
    "policy", "policies", "refund", "return", "returns", "shipping", "delivery", "exchange", "warranty",
    "guarantee", "gift card", "faq", "opening hours", "store hours", "payment", "privacy", "cancel",
    "knowledge base", "documents", "according to", "user guide", "manual",
    "money back", "pay with", "paypal", "credit card", "debit card", "charged", "double charged", "billing",
    "download", "file format", "formats", "support", "customer service", "contact", "open", "closed", "hours",
    "personal data", "my data", "delete my data", "vinyl", "cd", "physical", "terms", "tax", "sales tax",
)

# Words that point at a file the user attached, rather than at the knowledge base.
_FILE_KEYWORDS = (
    "attached", "attachment", "file i attached", "file i sent", "uploaded", "the file", "this file",
    "my file", "the files", "my files", "my document", "this document", "the pdf", "my pdf", "the spreadsheet",
)
_REFERS_TO_A_FILE = re.compile(
    r"\b(attached|attachments?|uploaded"
    r"|(the|this|that|these|my|our) (files?|pdfs?|spreadsheets?|csv)"
    r"|(this|that|these|my|our) (documents?|docs?)"
    r"|(files?|documents?|docs?|pdfs?) (i|we) (sent|gave|shared|added))\b", re.I)


_WORD = re.compile(r"[^\W_]+")


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

    if _REFERS_TO_A_FILE.search(text):
        return None  # "what does the file I attached say about refunds?" is about the file
    low = f" {' '.join(_WORD.findall(text.lower()))} "
    if any(f" {k}" in low for k in _KEYWORDS) or mentions_known_terms(text):
        return {"query": text.strip()}
    return None


async def search_attached_files(query: str, context: ToolContext) -> str:
    """Search the files the user attached to their messages earlier in this conversation (only this
    conversation's). Returns the lines that match, each with its file name; quote them and name the file."""
    from chorus.memory.files import conversation_files, quote

    files = conversation_files(context)
    hits = await files.search(query)
    if hits:
        return quote(hits, query)
    names = await files.names()
    if not names:
        return ("No file has been attached in this conversation, so there is none to search. Attach one with the "
                "paperclip (files attached in other conversations are not searched).")
    return f"Nothing in {', '.join(names)} (attached in this conversation) matches that."


def _file_args(text: str) -> Mapping[str, Any] | None:
    """Search the attached files when the user refers to one ("the file I attached", "my document")."""
    return {"query": text.strip()} if _REFERS_TO_A_FILE.search(text) else None


@hookimpl
def chorus_register_tools() -> list[ToolSpec]:
    return [
        ToolSpec(
            func=search_knowledge,
            keywords=_KEYWORDS,
            offline_args=_search_args,
            examples=("How long do refunds take?",),
        ),
        ToolSpec(
            func=search_attached_files,
            keywords=_FILE_KEYWORDS,
            offline_args=_file_args,
            examples=("What does the file I attached say about refunds?",),
        ),
    ]


@hookimpl
def chorus_register_agents() -> list[AgentSpec]:
    return [
        AgentSpec(
            name="librarian",
            description=(
                "Answers from the knowledge base (store policies, FAQ, the Chorus user guide and other "
                "ingested documents) and from files the user attached in this conversation, and cites "
                "the source of every answer."
            ),
            system_message=(
                "You answer questions from the knowledge base, and from the files the user attached in this "
                "conversation. When they ask about a file they attached (\"the file I sent\", \"my "
                "document\"), call `search_attached_files`; otherwise always call `search_knowledge` first. "
                "Answer only from what the tool returns, and cite each fact's source as [1], [2] with the "
                "file name. If nothing relevant comes back, say the knowledge base (or the file) does not "
                "cover it."
            ),
            tools=("search_knowledge", "search_attached_files"),
            keywords=_KEYWORDS,
            examples=("How long do refunds take?",),
        )
    ]
