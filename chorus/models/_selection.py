"""Choosing the next speaker without a model's help: the offline selector, and the keyword
choice that stands in when a real selector model names no single member."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chorus.models._convert import text_of
from chorus.models._fit import agent_score, lexicon_of, shared_words
from chorus.models._understand import read
from chorus.models.local import ModelHints
from chorus.plugins._specs import AgentSpec


def keyword_speaker(messages: list[dict[str, Any]], hints: ModelHints) -> str:
    """The member whose keywords, tools and description best fit the user's latest message in a
    selector prompt (ties go to the member listed first)."""
    prompt = "\n".join(text_of(m) for m in messages)
    candidates = _candidates(prompt, hints.agents)
    lexicon = lexicon_of(hints)
    reading = read(_last_user_turn(prompt, set(hints.agents)), lexicon)
    shared = shared_words(hints.agents.values(), hints.tools)
    return max(
        candidates,
        key=lambda name: (agent_score(reading, hints.agents[name], hints.tools, lexicon, shared=shared)
                          if name in hints.agents else 0, -candidates.index(name)),
    )


def checked_selection(reply: str, messages: list[dict[str, Any]], hints: ModelHints) -> str:
    """A real selector model's ``reply`` when it names exactly one candidate, else the keyword choice.

    A model that answers with no name, several names or a name not in the team "cannot decide";
    routing by keywords then beats AutoGen's fallback (the previous speaker) for the user.
    """
    prompt = "\n".join(text_of(m) for m in messages)
    candidates = _candidates(prompt, hints.agents)
    named = [c for c in candidates if _names(reply, c)]
    if len(named) == 1:
        return named[0] if not _names(reply, named[0], exact=True) else reply
    return keyword_speaker(messages, hints)


def _names(reply: str, member: str, *, exact: bool = False) -> bool:
    """Whether ``reply`` names ``member`` the ways AutoGen's selector accepts (``web_search``,
    ``web search``, ``web\\_search``); in any case unless ``exact``."""
    forms = "|".join(re.escape(f) for f in (member, member.replace("_", " "), member.replace("_", r"\_")))
    return re.search(rf"(?<=\W)({forms})(?=\W)", f" {reply} ", 0 if exact else re.I) is not None


_CANDIDATES = re.compile(r"\[([^\[\]]*)\]")


def _candidates(prompt: str, agents: Mapping[str, AgentSpec]) -> list[str]:
    """The speakers the selector may choose, in team order (from the prompt's ``[...]`` list)."""
    for match in reversed(_CANDIDATES.findall(prompt)):
        names = [n.strip().strip("'\"") for n in match.split(",")]
        found = [n for n in names if n in agents]
        if found:
            return found
    return list(agents) or ["assistant"]


SELECTOR_INSTRUCTIONS = "Read the conversation, then choose"
"""Where the transcript ends in Chorus's selector prompt (``chorus.teams.SELECTOR_PROMPT`` uses it)."""


def _last_user_turn(prompt: str, members: set[str]) -> str:
    """The user's latest message in a selector prompt's transcript (``name: text`` blocks)."""
    speaker = re.compile(r"^(\w+):\s?(.*)$")
    current: str | None = None
    blocks: list[tuple[str, list[str]]] = []
    for line in prompt.splitlines():
        if line.startswith(SELECTOR_INSTRUCTIONS):
            current = None  # the instructions after the transcript (see teams.SELECTOR_PROMPT)
            continue
        m = speaker.match(line)
        if m and (m.group(1) == "user" or m.group(1) in members):
            current = m.group(1)
            blocks.append((current, [m.group(2)]))
        elif current is not None:
            blocks[-1][1].append(line)
    for who, lines in reversed(blocks):
        if who == "user":
            return "\n".join(lines).strip()
    return prompt
