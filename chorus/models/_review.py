"""The offline model as a reviewer of an iterative team (``ModelHints.role == "reviewer"``)."""

from __future__ import annotations

from typing import Any

from chorus.models._convert import text_of
from chorus.models.local import ModelHints


def review(messages: list[dict[str, Any]], hints: ModelHints) -> str:
    """A reviewer's verdict on the latest draft of an iterative team, offline.

    A draft that answers (a tool's result, a reply from the knowledge base, ...) is approved with
    the team's approval phrase; one that says it cannot answer is sent back, once per round, until
    the team's ``max_iterations`` ends the turn.
    """
    question = next((text_of(m) for m in reversed(messages)
                     if m.get("role") == "user" and m.get("name", "user") == "user"), "").strip()
    draft: dict[str, Any] | None = None
    for message in reversed(messages):
        if message.get("role") == "user" and message.get("name", "user") == "user":
            break
        if message.get("role") in ("user", "assistant") and message.get("name") not in (None, hints.agent):
            draft = message
            break
    if draft is None or not text_of(draft).strip():
        return "There is no draft to review yet: the producer speaks first."
    author = str(draft.get("name"))
    text = text_of(draft).strip()
    if text.startswith(("Sorry, I can't", "I can't")):
        return (f"Not approved yet: {author}'s draft does not answer “{question[:120]}”. {author}, please "
                "try again with what your tools and the knowledge base can do.")
    return f"{hints.approval}: {author}'s draft answers the question ({len(text.split())} words)."


CANNOT = "Sorry, I can't"
"""How the offline model's answer starts when no tool of the team covers the message."""


def answered_by(messages: list[dict[str, Any]], me: str | None) -> list[str]:
    """The teammates who answered the user's latest message before ``me`` (in a pipeline or a
    graph), leaving out those that could not."""
    names: list[str] = []
    for message in reversed(messages):
        if message.get("role") == "user" and message.get("name", "user") == "user":
            break
        name = message.get("name")
        if message.get("role") == "assistant" and name in (None, me):
            return []  # I spoke already in this turn (a review loop's next draft): say it again
        if (message.get("role") in ("user", "assistant") and name not in (None, me, "user") and name not in names
                and not text_of(message).strip().startswith(CANNOT)):
            names.insert(0, str(name))
    return names
