"""The built-in ``guide``: answers questions about Chorus itself from its help topics.

The topics live in ``guide.md`` next to this file (one ``#`` section per
topic, ending in a ``keywords:`` line), so they work offline with any model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from chorus.models._understand import concept_sequence, concepts
from chorus.plugins import AgentSpec, ToolSpec, hookimpl


@dataclass(frozen=True)
class HelpTopic:
    title: str
    body: str
    keywords: tuple[str, ...]


@lru_cache(maxsize=1)
def help_topics() -> tuple[HelpTopic, ...]:
    """The topics of ``guide.md``, in file order."""
    text = (Path(__file__).with_name("guide.md")).read_text(encoding="utf-8")
    topics = []
    for section in re.split(r"^# ", text, flags=re.M)[1:]:
        title, _, rest = section.partition("\n")
        body_lines: list[str] = []
        keywords: tuple[str, ...] = ()
        for line in rest.strip().splitlines():
            if line.startswith("keywords:"):
                keywords = tuple(k.strip() for k in line.removeprefix("keywords:").split(",") if k.strip())
            else:
                body_lines.append(line)
        topics.append(HelpTopic(title.strip(), "\n".join(body_lines).strip(), keywords))
    return tuple(topics)


def _score(question: str, topic: HelpTopic) -> int:
    """Keyword phrases (as stems or synonyms: "logins", "sign in" for "login") count 3, or 1 for
    keywords too common to mean a topic on their own; words of the title count 1."""
    said = f" {' '.join(concept_sequence(question))} "
    phrase_hits = sum(1 if k in _GENERIC or k in _WEAK else 3 for k in topic.keywords if _says(said, k))
    title_hits = len(concepts(question) & concepts(topic.title))
    return phrase_hits + title_hits


def _says(said: str, keyword: str) -> bool:
    phrase = " ".join(concept_sequence(keyword))
    return bool(phrase) and f" {phrase} " in said


def chorus_help(question: str) -> str:
    """Look up how Chorus works: models, teams, plugins, the command line, limits."""
    ranked = sorted(help_topics(), key=lambda t: _score(question, t), reverse=True)
    best = ranked[0]
    if _score(question, best) == 0:
        titles = ", ".join(t.title for t in help_topics())
        return f"I have help on: {titles}. Ask about one of them."
    return f"**{best.title}**\n\n{best.body}"


# Topic keywords too common to mean "a question about Chorus" on their own.
_GENERIC = frozenset({"agents", "work", "about", "what is"})
# Keywords that call for help but say little about which topic: every question here is about Chorus.
_WEAK = frozenset({"chorus"})


def _help_args(text: str) -> dict[str, Any] | None:
    """Only a topic's own keyword phrase (not "what is", not a title word) calls for help."""
    said = f" {' '.join(concept_sequence(text))} "
    for topic in help_topics():
        if any(_says(said, k) for k in topic.keywords if k not in _GENERIC):
            return {"question": text}
    return None


@hookimpl
def chorus_register_tools() -> list[ToolSpec]:
    keywords = tuple(sorted({k for t in help_topics() for k in t.keywords} - _GENERIC))
    return [
        ToolSpec(
            func=chorus_help,
            keywords=keywords,
            offline_args=_help_args,
            examples=("How do I use a real model?", "How do I write a plugin?"),
        )
    ]


@hookimpl
def chorus_register_agents() -> list[AgentSpec]:
    return [
        AgentSpec(
            name="guide",
            description="Explains Chorus itself: configuring models, teams, plugins and the command line.",
            system_message=(
                "You explain how to use and configure Chorus. Look answers up with the chorus_help "
                "tool and quote the exact setting or command names it gives."
            ),
            tools=("chorus_help",),
            keywords=("chorus", "plugin", "team", "model", "configure", "setting", "command", "cli"),
            examples=("How do I use a real model?",),
        )
    ]
